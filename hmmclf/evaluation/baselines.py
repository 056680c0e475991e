"""The baselines every result is reported beside, run on the same folds as the model.

``always_normal`` scores 50 by construction; ``prior_random`` guesses with the
training frequencies; ``gbm_clip_stats`` is a gradient-boosting classifier on
per-clip feature statistics, the kind of model a reviewer would try first.
"""

from __future__ import annotations

import numpy as np

from ..data.features import clip_statistics
from ..task.classes import CLASSES


def baseline_predictions(
    train_seqs: list[np.ndarray], train_y: np.ndarray, test_seqs: list[np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """Predictions of the reference baselines for one fold.

    ``always_normal``; ``prior_random`` (states drawn with the training
    frequencies); ``gbm_clip_stats`` (histogram gradient boosting on per-clip
    feature means and standard deviations, classes balanced by resampling each
    state to the size of the largest with a seeded draw; up to 60 rounds of
    15-leaf trees at learning rate 0.25 on 64 histogram bins, early stopping
    on a 10 % validation split of the training part). Resampling rather than
    ``class_weight``: scikit-learn's weighted path made this baseline cost
    more than the HMMs themselves; and scikit-learn's defaults (200 rounds at
    rate 0.1, 255 bins) cost several times as long for no better Score.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    freqs = np.array([np.mean(train_y == s) for s in CLASSES])
    largest = max(int(np.sum(train_y == s)) for s in CLASSES)
    balanced = np.concatenate(
        [rng.choice(np.flatnonzero(train_y == s), largest, replace=True) for s in CLASSES if np.any(train_y == s)]
    )
    # A validation split for early stopping needs a few clips of every state.
    gbm = HistGradientBoostingClassifier(
        random_state=seed,
        max_iter=60,
        learning_rate=0.25,
        max_leaf_nodes=15,
        max_bins=64,
        early_stopping=len(balanced) >= 400,
    )
    stats = clip_statistics(train_seqs)
    gbm.fit(stats[balanced], train_y[balanced])
    return {
        "always_normal": np.full(len(test_seqs), "normal"),
        "prior_random": rng.choice(np.array(CLASSES), size=len(test_seqs), p=freqs),
        "gbm_clip_stats": np.asarray(gbm.predict(clip_statistics(test_seqs)), dtype=str),
    }
