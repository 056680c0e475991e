"""hmmclf: Hidden Markov Model classifier for respiratory-cycle lung sounds.

A clip is labelled normal, crackle, wheeze or both (crackle and wheeze) by
comparing the length-normalised log-likelihoods of one Gaussian HMM per label
state over frame-level MFCC + delta features.

Submodules are imported lazily so that ``hmmclf predict`` on a single clip does
not pay for importing everything at start-up.
"""

__version__ = "0.3.0"

__all__ = ["__version__"]
