"""``ModelConfig``: every setting of the classifier in one typed, frozen, validated value.

The command line, experiment files, :class:`~hmmclf.model.classifier.HMMClassifier`
and the per-class HMM fits all read their settings from a :class:`ModelConfig`.
Its fields are checked in one place, against :data:`PARAMETER_CONSTRAINTS`
(declared, as scikit-learn's ``_parameter_constraints`` are), when the value
is made: an invalid configuration never exists.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from ..task.classes import CLASSES

TOPOLOGIES = ("ergodic", "left-right")
IMPLEMENTATIONS = ("scaling", "log")
CLASS_PRIORS = ("empirical", "uniform")
FEATURE_CHOICES = ("auto", "all", "cepstra")
"""``features``: every column, the cepstra only, or the better of the two on inner folds."""


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (``int`` or ``float``) in [low, high] (either end open, or absent)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks the constraint, or None."""
        integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not (integral if self.kind is int else isinstance(value, numbers.Real) and not isinstance(value, bool)):
            return f"must be {'an integer' if self.kind is int else 'a number'}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            return f"must be in {left}{low}, {high}{right}"
        return None


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    options: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        return None if value in self.options else f"must be one of {self.options}"


@dataclass(frozen=True)
class Boolean:
    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"


@dataclass(frozen=True)
class OffsetsOrNone:
    """None, or one finite number per label class."""

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None
        numeric = isinstance(value, tuple) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
        )
        return None if numeric and len(value) == len(CLASSES) else f"must hold {len(CLASSES)} numbers, one per class"


def _decision_rules() -> OneOf:
    from .decision import DECISION_RULES

    return OneOf(tuple(DECISION_RULES))


@dataclass(frozen=True)
class ModelConfig:
    """The classifier's settings; :class:`~hmmclf.model.classifier.HMMClassifier` documents each field.

    Make one with keywords, :meth:`from_dict` (a config file's ``[model]``
    table: unknown keys are errors) or :meth:`with_overrides` (a copy with
    some fields changed; ``None`` leaves a field as it is). Raises
    ``ValueError`` naming every invalid field.
    """

    n_states: int = 5
    topology: str = "ergodic"
    n_iter: int = 10
    tol: float = 1e-3
    min_covar: float = 1e-3
    init_frames: int = 5000
    kmeans_restarts: int = 1
    fit_frames: int = 60000
    standardize: bool = True
    class_prior: str = "empirical"
    class_offsets: tuple[float, ...] | None = None
    features: str = "all"
    feature_margin: float = 0.03
    decision: str = "boosted"
    inner_folds: int = 3
    stack_c: float = 1.0
    peak_frames: int = 50
    select_margin: float = 0.03
    implementation: str = "scaling"
    random_state: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.class_offsets, list):
            object.__setattr__(self, "class_offsets", tuple(self.class_offsets))
        problems = [
            f"{name} {problem} (got {getattr(self, name)!r})"
            for name, constraint in parameter_constraints().items()
            if (problem := constraint.problem(getattr(self, name))) is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """From a mapping of field names (a ``[model]`` table); unknown names raise ``ValueError``."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown model settings {unknown}; known: {sorted(cls.field_names())}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def with_overrides(self, **changes: Any) -> ModelConfig:
        """A copy with the given fields changed; a ``None`` value leaves its field unchanged."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(given) - set(self.field_names()))
        if unknown:
            raise ValueError(f"unknown model settings {unknown}")
        return dataclasses.replace(self, **given)

    def rule_options(self) -> dict[str, Any]:
        """The settings a decision rule may take (each rule takes those it names)."""
        return {
            "stack_c": self.stack_c,
            "peak_frames": int(self.peak_frames),
            "select_margin": float(self.select_margin),
            "random_state": int(self.random_state),
        }


def parameter_constraints() -> dict[str, Any]:
    """Each :class:`ModelConfig` field's constraint (the decision rules by their registry)."""
    return {
        "n_states": Interval(int, 1, None),
        "topology": OneOf(TOPOLOGIES),
        "n_iter": Interval(int, 1, None),
        "tol": Interval(float, 0, None),
        "min_covar": Interval(float, 0, None, low_open=True),
        "init_frames": Interval(int, 10, None),
        "kmeans_restarts": Interval(int, 1, None),
        "fit_frames": Interval(int, 0, None),
        "standardize": Boolean(),
        "class_prior": OneOf(CLASS_PRIORS),
        "class_offsets": OffsetsOrNone(),
        "features": OneOf(FEATURE_CHOICES),
        "feature_margin": Interval(float, 0, 1, high_open=True),
        "decision": _decision_rules(),
        "inner_folds": Interval(int, 2, None),
        "stack_c": Interval(float, 0, None, low_open=True),
        "peak_frames": Interval(int, 1, None),
        "select_margin": Interval(float, 0, 1, high_open=True),
        "implementation": OneOf(IMPLEMENTATIONS),
        "random_state": Interval(int, None, None),
    }
