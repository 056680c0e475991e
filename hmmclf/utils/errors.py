"""Exceptions for problems in the user's input, each printable as one line."""

from __future__ import annotations


class HmmclfError(Exception):
    """Base class of the errors the CLI reports as one line (exit code 2)."""


class LabelsFileError(HmmclfError):
    """The labels file cannot be used at all (no file or label columns, empty, unreadable)."""


class AudioError(HmmclfError):
    """One clip cannot be used; ``reason`` is the short text written to ``skipped.csv``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class CacheError(HmmclfError):
    """A feature cache is missing, damaged, foreign or made with another configuration."""


class ModelFileError(HmmclfError):
    """A saved model is missing, damaged, foreign or made with another configuration."""


class BusyError(HmmclfError):
    """Another hmmclf process holds the lock on an output directory."""
