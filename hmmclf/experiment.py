"""Named experiment configurations: features, model and decision rule in one TOML file.

Layout (every table and key optional; what is left out keeps its default)::

    name = "band-limited"
    description = "MFCC on 50-2000 Hz only"

    [features]          # any FeatureConfig field
    fmin = 50.0
    fmax = 2000.0

    [model]             # any HMMClassifier parameter
    n_states = 5
    decision = "tuned"

    [cv]
    folds = 5
    seed = 0
    repeats = 1

Read with the standard library's ``tomllib`` (``tomli`` on Python 3.10).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HmmclfError
from .features import FeatureConfig

CV_KEYS = {"folds": int, "seed": int, "repeats": int}


@dataclass(frozen=True)
class Experiment:
    """One named configuration of features, model and cross-validation."""

    name: str = "default"
    description: str = "built-in defaults"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: dict[str, Any] = field(default_factory=dict)
    cv: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, stored in every report."""
        return {
            "name": self.name,
            "description": self.description,
            "features": self.features.to_dict(),
            "model": dict(self.model),
            "cv": dict(self.cv),
        }


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise HmmclfError(f"{path}: cannot read experiment config ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise HmmclfError(f"{path}: invalid TOML ({exc})") from None


def load_experiment(path: str | os.PathLike[str]) -> Experiment:
    """Read and validate an experiment config; unknown keys are errors, not ignored.

    Raises
    ------
    HmmclfError
        One line naming the file and the problem.
    """
    from .classifier import HMMClassifier

    path = Path(path)
    data = _load_toml(path)
    unknown = set(data) - {"name", "description", "features", "model", "cv"}
    if unknown:
        raise HmmclfError(f"{path}: unknown top-level keys {sorted(unknown)}")
    features = data.get("features", {})
    model = data.get("model", {})
    cv = data.get("cv", {})
    for table, value in (("features", features), ("model", model), ("cv", cv)):
        if not isinstance(value, dict):
            raise HmmclfError(f"{path}: [{table}] must be a table")
    known_features = {f.name for f in dataclasses.fields(FeatureConfig)}
    if set(features) - known_features:
        raise HmmclfError(f"{path}: unknown [features] keys {sorted(set(features) - known_features)}")
    known_model = set(inspect.signature(HMMClassifier).parameters) - {"n_jobs"}
    if set(model) - known_model:
        raise HmmclfError(
            f"{path}: unknown [model] keys {sorted(set(model) - known_model)}; known: {sorted(known_model)}"
        )
    for key, value in cv.items():
        if key not in CV_KEYS or not isinstance(value, int):
            raise HmmclfError(f"{path}: [cv] takes integers folds, seed, repeats; got {key} = {value!r}")
    try:
        config = FeatureConfig.from_dict({**FeatureConfig().to_dict(), **features})
        if "class_offsets" in model:
            model = {**model, "class_offsets": tuple(model["class_offsets"])}
        HMMClassifier(**model).check_params()
    except (ValueError, TypeError) as exc:
        raise HmmclfError(f"{path}: {exc}") from None
    return Experiment(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        features=config,
        model=model,
        cv=cv,
    )
