"""The four label classes and the label sets they stand for.

``normal`` excludes the others; ``crackle`` and ``wheeze`` may co-occur, and
their co-occurrence is the class ``both``:

======== ====================
class    label set
======== ====================
normal   {normal}
crackle  {crackle}
wheeze   {wheeze}
both     {crackle, wheeze}
======== ====================

Every array, report and model file orders the classes as :data:`CLASSES`.
This module imports nothing heavy, so that every layer can use it.
"""

from __future__ import annotations

import re

CLASSES: tuple[str, ...] = ("normal", "crackle", "wheeze", "both")
"""The label classes, in the order used by every array, report and model file."""

CLASS_LABELS: dict[str, tuple[str, ...]] = {
    "normal": ("normal",),
    "crackle": ("crackle",),
    "wheeze": ("wheeze",),
    "both": ("crackle", "wheeze"),
}
"""The label set each class stands for."""

_TOKEN_SPLIT = re.compile(r"\s*(?:\+|,|;|/|&|\band\b|\s)\s*")
_TOKEN_NAMES = {
    "normal": "normal",
    "none": "normal",
    "healthy": "normal",
    "crackle": "crackle",
    "crackles": "crackle",
    "wheeze": "wheeze",
    "wheezes": "wheeze",
    "both": "both",
}


def labels_to_class(labels: set[str] | frozenset[str]) -> str:
    """Map a label set to its class; raise ``ValueError`` when the set is not valid.

    >>> labels_to_class({"wheeze", "crackle"})
    'both'
    """
    labels = set(labels)
    if "both" in labels:
        labels.discard("both")
        labels |= {"crackle", "wheeze"}
    if not labels:
        raise ValueError("no label")
    if "normal" in labels and len(labels) > 1:
        raise ValueError("contradictory labels: normal together with " + "+".join(sorted(labels - {"normal"})))
    for name, members in CLASS_LABELS.items():
        if labels == set(members):
            return name
    raise ValueError("unknown label set " + "+".join(sorted(labels)))  # pragma: no cover


def parse_label_text(text: str) -> str:
    """Parse one cell of a ``label`` column into a label class.

    Raises ``ValueError`` with the skip reason for unknown or contradictory text.
    """
    raw = str(text).strip().lower()
    if not raw:
        raise ValueError("no label")
    tokens = [t for t in _TOKEN_SPLIT.split(raw) if t]
    unknown = [t for t in tokens if t not in _TOKEN_NAMES]
    if unknown:
        raise ValueError(f"unknown label {text.strip()!r}")
    return labels_to_class({_TOKEN_NAMES[t] for t in tokens})
