"""The baselines every result is reported beside, run on the same folds as the model.

``always_normal`` scores 50 by construction; ``prior_random`` guesses with the
training frequencies; ``gbm_clip_stats`` is a gradient-boosting classifier on
per-clip feature statistics, the kind of model a reviewer would try first.
"""

from __future__ import annotations

import numpy as np

from ..model.decision.boosted import fit_balanced_gbm
from ..task.classes import CLASSES


def baseline_predictions(
    train_statistics: np.ndarray, train_y: np.ndarray, test_statistics: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Predictions of the reference baselines for one fold, from the clips'
    :func:`~hmmclf.data.features.clip_statistics` (training and test rows).

    ``always_normal``; ``prior_random`` (states drawn with the training
    frequencies); ``gbm_clip_stats`` (histogram gradient boosting on per-clip
    feature means and standard deviations, every state resampled to the size
    of the largest, at most :data:`~hmmclf.model.decision.boosted.ROWS_PER_CLASS`,
    with a seeded draw; up to 60 rounds of 15-leaf trees at learning rate 0.25
    on 64 histogram bins, early stopping on a 10 % validation split of the
    training part: the trees of the default ``boosted`` decision rule,
    :func:`~hmmclf.model.decision.boosted.fit_balanced_gbm`, without its HMM
    scores, cross-fitting and tuned offsets). Drawing every class up to the
    largest instead (hmmclf 0.7) took 2.7 times as long on SPRSound (7.2 s
    against 2.6 s for its five fits, profiled in one process), the largest
    single item of its ``cv``, and scored no higher (79.0 against 79.3, seeds
    0-2).
    """
    rng = np.random.default_rng(seed)
    freqs = np.array([np.mean(train_y == s) for s in CLASSES])
    gbm = fit_balanced_gbm(train_statistics, train_y, CLASSES, rng, seed)
    return {
        "always_normal": np.full(len(test_statistics), "normal"),
        "prior_random": rng.choice(np.array(CLASSES), size=len(test_statistics), p=freqs),
        "gbm_clip_stats": np.asarray(gbm.predict(test_statistics), dtype=str),
    }
