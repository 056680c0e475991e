"""Where a corpus's groups come from: what the user asked for, and what was used.

Groups keep one patient's clips on one side of every cross-validation split.
Two typed values carry that decision from the command line to the report:

:class:`GroupSpec`
    what ``--groups`` asked for, parsed once: ``auto``, a column name,
    ``regex:PATTERN``, ``infer`` or ``infer:N`` (N groups), or ``none``;
:class:`Grouping`
    what was used, decided while the labels file is read (and completed when
    groups are inferred from the audio): its kind, the column or file-name
    scheme, the inference method, and whether the groups are patients. It
    travels with the labels, the feature set, the cross-validation result and
    the report, and says itself in words (:meth:`Grouping.describe`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

# Group columns, compared by :func:`normalised_column_name`: a patient column first
# (patients with several recordings stay on one side), then a recording column.
PATIENT_COLUMNS = ("patientid", "patient", "pid", "subject", "subjectid", "patientnumber", "patientno")
RECORDING_COLUMNS = ("recording", "recordingid", "record", "recordid", "session")
# File names that carry the patient: ICBHI 2017 cycles (101_1b1_Al_sc_Meditron_3.wav,
# patient 101) and SPRSound events (40138127_14.7_0_p3_139_0.flac, patient 40138127).
FILENAME_PATTERNS = {
    "ICBHI 2017": r"^(\d{3})_\d+[a-z]\d+_[A-Za-z]{2}_(?:sc|mc)_[A-Za-z0-9]+",
    "SPRSound": r"^(\d{6,9})_\d+(?:\.\d+)?_[01]_p\d+_\d+",
}
GROUPS_HELP = (
    "a column name, 'regex:PATTERN' (first capture group of the file name), 'infer' or 'infer:N' "
    "(N groups inferred from the audio), 'none', or 'auto' (patient column, else recording column, "
    "else known file names, else infer)"
)


def normalised_column_name(name: str) -> str:
    """A column name compared without case, spaces, ``_`` or ``-`` (``Patient ID`` = ``patient_id``)."""
    return re.sub(r"[\s_\-]+", "", str(name).lower())


@dataclass(frozen=True)
class GroupSpec:
    """What ``--groups`` asked for.

    Attributes
    ----------
    kind : {"auto", "column", "regex", "infer", "none"}
    column : str or None
        The column named (``kind == "column"``), as the user spelled it.
    pattern : str or None
        The regular expression (``kind == "regex"``); its first capture group names the group.
    n_groups : int or None
        ``infer:N``: infer exactly N groups (otherwise the tool chooses).
    """

    kind: str = "auto"
    column: str | None = None
    pattern: str | None = None
    n_groups: int | None = None

    @classmethod
    def parse(cls, text: str | GroupSpec | None) -> GroupSpec:
        """Parse a ``--groups`` value; raise ``ValueError`` with a one-line reason."""
        if isinstance(text, GroupSpec):
            return text
        choice = "none" if text is None else str(text).strip()
        lower = choice.lower()
        if lower in ("none", "auto", "infer"):
            return cls(lower)
        if lower.startswith("infer:"):
            count = choice[len("infer:") :].strip()
            if not count.isdigit() or int(count) < 2:
                raise ValueError(f"--groups {choice!r}: infer:N needs a whole number N >= 2")
            return cls("infer", n_groups=int(count))
        if lower.startswith("regex:"):
            pattern = choice[len("regex:") :]
            try:
                if re.compile(pattern).groups < 1:
                    raise re.error("the pattern needs a capture group: the first one names the group")
            except re.error as exc:
                raise ValueError(f"--groups {choice!r}: invalid pattern ({exc})") from None
            return cls("regex", pattern=pattern)
        if not choice:
            raise ValueError(f"--groups is empty; give {GROUPS_HELP}")
        return cls("column", column=choice)

    def __str__(self) -> str:
        if self.kind == "column":
            return str(self.column)
        if self.kind == "regex":
            return f"regex:{self.pattern}"
        if self.kind == "infer" and self.n_groups:
            return f"infer:{self.n_groups}"
        return self.kind


@dataclass(frozen=True)
class Grouping:
    """Where the groups of a corpus came from.

    Attributes
    ----------
    kind : {"column", "filename", "regex", "inferred", "none"}
        A labels-file column; a known file-name scheme; the user's file-name
        pattern; inferred from the audio; or no groups at all.
    column : str or None
        The column, spelled as in the labels file (``kind == "column"``).
    scheme : str or None
        The file-name scheme (``"ICBHI 2017"``) or the user's pattern.
    method : str or None
        How inferred groups were made (set when they are; None while pending).
    requested_groups : int or None
        ``infer:N``: the group count the user asked for.
    unmatched : int
        File names the user's pattern did not match (each became its own group).
    reason : str or None
        Why groups are inferred (what ``auto`` did not find).
    """

    kind: str = "none"
    column: str | None = None
    scheme: str | None = None
    method: str | None = None
    requested_groups: int | None = None
    unmatched: int = 0
    reason: str | None = None

    @property
    def grouped(self) -> bool:
        return self.kind != "none"

    @property
    def patients(self) -> bool:
        """True when each group is a patient (a patient column, or a file-name scheme that names one)."""
        if self.kind == "filename":
            return True
        return self.kind == "column" and normalised_column_name(self.column or "") in PATIENT_COLUMNS

    @property
    def unit(self) -> str:
        """``patients`` or ``groups``: what to call the groups in a sentence."""
        return "patients" if self.patients else "groups"

    def describe(self) -> str:
        """Where the groups come from, as a phrase that completes "grouped by ..."."""
        if self.kind == "column":
            return f"the column {self.column!r} of the labels file"
        if self.kind == "filename":
            return f"{self.scheme} file names (patient = first field)"
        if self.kind == "regex":
            note = f"the file-name pattern {self.scheme!r}"
            return note + (f" ({self.unmatched} names did not match: each is its own group)" if self.unmatched else "")
        if self.kind == "inferred":
            how = self.method or "the audio (groups not inferred yet)"
            return how + (f"; {self.reason}" if self.reason else "")
        return "nothing (no groups)"

    def inferred_by(self, method: str) -> Grouping:
        """This grouping, completed with how the groups were inferred."""
        return replace(self, method=method)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Grouping:
        """From :meth:`to_dict` output; unknown keys are ignored, a missing kind means no groups."""
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        grouping = cls(**known)
        if grouping.kind not in ("column", "filename", "regex", "inferred", "none"):
            raise ValueError(f"unknown group kind {grouping.kind!r}")
        return grouping
