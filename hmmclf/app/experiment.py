"""Named experiment configurations: features, model and decision rule in one TOML file.

Layout (every table and key optional; what is left out keeps its default)::

    name = "band-limited"
    description = "MFCC on 50-2000 Hz only"

    [features]          # any FeatureConfig field
    fmin = 50.0
    fmax = 2000.0

    [model]             # any ModelConfig field (HMMClassifier's parameters but n_jobs)
    n_states = 5
    decision = "tuned"

    [cv]
    folds = 5
    seed = 0
    repeats = 1
    dead_zone = "auto"  # on when groups are inferred; or "on", "off" (see hmmclf.evaluation.dead_zone)

Read with the standard library's ``tomllib`` (``tomli`` on Python 3.10).

The experiments of the README ship inside the package (``hmmclf/app/experiments/*.toml``,
package data): ``--config NAME`` loads one from any folder, ``hmmclf experiments``
lists them, and ``--config PATH`` reads any other file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.features import FeatureConfig
from ..model.config import ModelConfig
from ..utils.errors import HmmclfError


@dataclass(frozen=True)
class CVSettings:
    """How a cv run splits and repeats: ``[cv]`` of an experiment file."""

    folds: int = 5
    seed: int = 0
    repeats: int = 1
    dead_zone: str = "auto"

    def __post_init__(self) -> None:
        if self.dead_zone not in ("auto", "on", "off"):
            raise ValueError(f"[cv] dead_zone must be 'auto', 'on' or 'off', got {self.dead_zone!r}")
        for name, low in (("folds", 2), ("seed", 0), ("repeats", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"[cv] takes integers folds >= 2, seed >= 0, repeats >= 1; got {name} = {value!r}")


@dataclass(frozen=True)
class Experiment:
    """One named configuration of features, model and cross-validation."""

    name: str = "default"
    description: str = "built-in defaults"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cv: CVSettings = field(default_factory=CVSettings)

    def with_overrides(
        self,
        *,
        folds: int | None = None,
        seed: int | None = None,
        repeats: int | None = None,
        dead_zone: str | None = None,
        **model: Any,
    ) -> Experiment:
        """A copy with what the command line gave; ``None`` keeps the experiment's value.

        The one rule for every command: a value given on the command line wins
        over the experiment file, which wins over the built-in default.
        """
        given = {"folds": folds, "seed": seed, "repeats": repeats, "dead_zone": dead_zone}
        cv = dataclasses.replace(self.cv, **{k: v for k, v in given.items() if v is not None})
        return dataclasses.replace(self, model=self.model.with_overrides(**model), cv=cv)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, stored in every report."""
        return {
            "name": self.name,
            "description": self.description,
            "features": self.features.to_dict(),
            "model": self.model.to_dict(),
            "cv": dataclasses.asdict(self.cv),
        }


SHIPPED_PACKAGE = "hmmclf.app"
SHIPPED_FOLDER = "experiments"


def _shipped_files() -> dict[str, Any]:
    """The shipped experiment configs by name (file stem), as :mod:`importlib.resources` traversables."""
    from importlib.resources import files

    folder = files(SHIPPED_PACKAGE).joinpath(SHIPPED_FOLDER)
    if not folder.is_dir():  # pragma: no cover - a broken installation
        return {}
    return {
        entry.name[: -len(".toml")]: entry
        for entry in folder.iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    }


def shipped_experiment_names() -> list[str]:
    """Names of the experiments shipped with hmmclf, sorted."""
    return sorted(_shipped_files())


def shipped_experiments() -> list[Experiment]:
    """Every shipped experiment, loaded and validated, sorted by name."""
    return [load_experiment(name) for name in shipped_experiment_names()]


def format_experiment_list(experiments: list[Experiment]) -> str:
    """One line per experiment: its name, padded, and its description."""
    width = max((len(e.name) for e in experiments), default=0)
    return "\n".join(f"{e.name.ljust(width)}  {e.description}" for e in experiments)


def _parse_toml(raw: bytes, where: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise HmmclfError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise HmmclfError(f"{where}: invalid TOML ({exc})") from None


def _read_config(config: str | os.PathLike[str]) -> tuple[str, str, bytes]:
    """``(label for messages, default name, bytes)`` of a config path or a shipped experiment's name.

    A path that exists is read. Otherwise a plain name (no folder part; ``.toml``
    optional) is looked up among the shipped experiments.
    """
    path = Path(config)
    if path.exists():
        try:
            return str(path), path.stem, path.read_bytes()
        except OSError as exc:
            raise HmmclfError(f"{path}: cannot read experiment config ({exc.strerror or exc})") from None
    shipped = _shipped_files()
    text = str(config)
    name = text[: -len(".toml")] if text.endswith(".toml") else text
    if path.name == text and name in shipped:
        return f"{name} (shipped experiment)", name, shipped[name].read_bytes()
    if path.stem in shipped:
        raise HmmclfError(f"{text}: no such file; did you mean the shipped experiment (--config {path.stem})?")
    raise HmmclfError(
        f"{text}: no such experiment config file, nor a shipped experiment "
        f"(shipped: {', '.join(sorted(shipped)) or 'none'}; 'hmmclf experiments' describes them)"
    )


def load_experiment(config: str | os.PathLike[str]) -> Experiment:
    """Read and validate an experiment config; unknown keys are errors, not ignored.

    Parameters
    ----------
    config : path or str
        A TOML file, or the name of a shipped experiment (``band-50-1000``;
        see :func:`shipped_experiment_names`). A file that exists wins over a
        shipped experiment of the same name.

    Raises
    ------
    HmmclfError
        One line naming the file and the problem; for a name that is neither
        a file nor a shipped experiment, the shipped names.
    """
    path, stem, raw = _read_config(config)
    data = _parse_toml(raw, path)
    unknown = set(data) - {"name", "description", "features", "model", "cv"}
    if unknown:
        raise HmmclfError(f"{path}: unknown top-level keys {sorted(unknown)}")
    tables = {name: data.get(name, {}) for name in ("features", "model", "cv")}
    for table, value in tables.items():
        if not isinstance(value, dict):
            raise HmmclfError(f"{path}: [{table}] must be a table")
    known_features = {f.name for f in dataclasses.fields(FeatureConfig)}
    if set(tables["features"]) - known_features:
        raise HmmclfError(f"{path}: unknown [features] keys {sorted(set(tables['features']) - known_features)}")
    known_model = set(ModelConfig.field_names())
    if set(tables["model"]) - known_model:
        unknown_model = sorted(set(tables["model"]) - known_model)
        raise HmmclfError(f"{path}: unknown [model] keys {unknown_model}; known: {sorted(known_model)}")
    known_cv = {f.name for f in dataclasses.fields(CVSettings)}
    if set(tables["cv"]) - known_cv:
        raise HmmclfError(
            f"{path}: [cv] takes integers folds, seed, repeats; got {sorted(set(tables['cv']) - known_cv)}"
        )
    try:
        features = FeatureConfig.from_dict({**FeatureConfig().to_dict(), **tables["features"]})
        model = ModelConfig.from_dict(tables["model"])
        cv = CVSettings(**tables["cv"])
    except (ValueError, TypeError) as exc:
        raise HmmclfError(f"{path}: {exc}") from None
    return Experiment(
        name=str(data.get("name", stem)),
        description=str(data.get("description", "")),
        features=features,
        model=model,
        cv=cv,
    )


def run_settings(report: dict[str, Any]) -> dict[str, Any]:
    """What a cv run was made with, flattened from its ``report.json``.

    ``seed``, ``repeats``, ``folds``, ``groups`` (the group column or source, or
    ``none``), then every model parameter (``config.model_params``, ``n_jobs``
    left out) and feature parameter (``config.feature_config``). Keys an older
    report lacks are left out.
    """
    config = report.get("config") or {}
    settings: dict[str, Any] = {k: config[k] for k in ("seed",) if k in config}
    settings["repeats"] = len(report.get("repeats") or []) or 1
    settings.update({k: config[k] for k in ("folds",) if k in config})
    info = report.get("groups") or {}
    if "kind" in info:
        settings["groups"] = info.get("column") or info.get("scheme") or info["kind"]
    elif "grouped" in config:  # a report of hmmclf 0.3
        settings["groups"] = (config.get("group_column") or config.get("group_source")) if config["grouped"] else "none"
    settings.update({k: v for k, v in (config.get("model_params") or {}).items() if k != "n_jobs"})
    settings.update(config.get("feature_config") or {})
    return settings


def _comparable(value: Any) -> str:
    """JSON text of a setting, numbers as floats and tuples as lists, so 50 and 50.0 compare equal."""
    if isinstance(value, (list, tuple)):
        return json.dumps([json.loads(_comparable(v)) for v in value])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(float(value))
    return json.dumps(value, sort_keys=True)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(str(v) for v in value) or "none"
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def run_names(reports: list[dict[str, Any]]) -> list[str]:
    """A name for each compared cv report: its experiment plus what differs.

    A setting (:func:`run_settings`) is named in a row when its value is not the
    same in every compared report and, in that row, not hmmclf's default (seed 0,
    one repeat, 5 folds, the default model and feature parameters; for the groups,
    the value most reports share): ``default``, ``default seed=1``,
    ``left-right topology=left-right``, ``default repeats=3``. Two runs that differ
    in any setting get different names; the leaderboard appends the report
    directory to names still shared (the same configuration run twice).
    """
    settings = [run_settings(report) for report in reports]
    defaults = {"seed": 0, "repeats": 1, "folds": 5, **ModelConfig().to_dict(), **FeatureConfig().to_dict()}
    keys = list(dict.fromkeys(k for s in settings for k in s))
    varying = [k for k in keys if len({_comparable(s.get(k)) for s in settings}) > 1]
    reference = {}
    for k in varying:
        values = [_comparable(s.get(k)) for s in settings]
        reference[k] = _comparable(defaults[k]) if k in defaults else max(values, key=values.count)
    return [
        " ".join(
            [(report.get("experiment") or {}).get("name", "default")]
            + [f"{k}={_shown(s[k])}" for k in varying if k in s and _comparable(s[k]) != reference[k]]
        )
        for report, s in zip(reports, settings)
    ]
