"""Reading labels files: layouts, label sets, groups and the rows that cannot be used.

The label classes and their label sets are defined in :mod:`hmmclf.task.classes`.

Accepted layouts of the labels file (column names are case-insensitive, the
separator is sniffed, a UTF-8 byte-order mark is ignored):

``label``
    one column ``label``/``labels``/``class`` with ``normal``, ``crackle``,
    ``wheeze`` or ``both``; ``both`` may also be written ``wheeze+crackle``,
    ``crackle,wheeze``, ``crackle;wheeze``, ``crackles & wheezes`` ...
``icbhi``
    0/1 columns ``crackles``/``crackle`` and ``wheezes``/``wheeze``.
``onehot``
    0/1 columns ``normal``, ``wheeze`` and ``crackle`` (plural names accepted).

The file column is one of ``filename``/``file``/``file_name``/``fname``/``path``.
Groups keep one patient's clips on one side of a CV split. Unless chosen, they
come from a patient column, else a recording column, else file names of a known
scheme (ICBHI 2017, SPRSound), else they are inferred from the audio
(:mod:`hmmclf.data.groups`); :func:`read_labels` says which.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from ..task.classes import labels_to_class, parse_label_text
from ..utils.errors import LabelsFileError
from .grouping import FILENAME_PATTERNS, PATIENT_COLUMNS, RECORDING_COLUMNS, Grouping, GroupSpec, normalised_column_name

FILE_COLUMNS = ("filename", "file", "file_name", "fname", "path")
LABEL_COLUMNS = ("label", "labels", "class")
CRACKLE_COLUMNS = ("crackles", "crackle")
WHEEZE_COLUMNS = ("wheezes", "wheeze")

LAYOUTS_HELP = (
    "accepted layouts: a file column (filename/file/file_name/fname/path) with either "
    "a label column (label/labels/class), 0/1 columns crackles+wheezes, "
    "or one-hot 0/1 columns normal+wheeze+crackle"
)

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", ""}


def _parse_flag(value: str, column: str) -> bool:
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"unknown value {value!r} in column {column!r} (expected 0 or 1)")


def check_relative_path(name: str) -> str:
    """Return ``name`` as a POSIX relative path, or raise ``ValueError`` if it leaves its directory.

    Absolute paths (POSIX or Windows, drive letters included) and any ``..``
    component are refused: such a path is never opened.
    """
    name = str(name).strip()
    if not name:
        raise ValueError("empty file name")
    if "\x00" in name:
        raise ValueError("file name holds a NUL byte")
    win = PureWindowsPath(name)
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or win.is_absolute() or win.drive or name.startswith(("/", "\\")):
        raise ValueError("absolute path; paths must be relative to the data directory")
    if ".." in posix.parts:
        raise ValueError("path leaves the data directory")
    return posix.as_posix()


@dataclass
class LabelTable:
    """The usable rows of a labels file and the rows that were left out.

    Attributes
    ----------
    rows : pandas.DataFrame
        Columns ``file`` (path relative to the data directory), ``class`` and
        ``group`` (string, or None for every row when there is no group column).
    skipped : pandas.DataFrame
        Columns ``file`` and ``reason``, one row per unusable line.
    layout : str
        ``label``, ``icbhi`` or ``onehot``.
    grouping : Grouping
        Where the groups come from. For inferred groups ``rows["group"]`` is
        None until the audio is read (:meth:`FeatureSet.with_labels`).
    """

    rows: pd.DataFrame
    skipped: pd.DataFrame
    layout: str
    grouping: Grouping = Grouping()


_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8", "UTF-8"),
    (b"\xff\xfe", "utf-16-le", "UTF-16"),
    (b"\xfe\xff", "utf-16-be", "UTF-16"),
)


def _decode_labels(path: Path, raw: bytes) -> str:
    """The text of a labels file: UTF-8, or UTF-16/32 with a byte-order mark, else Latin-1.

    A UTF-16 file without a byte-order mark (every other byte NUL) is refused by name.
    """
    for bom, codec, name in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise LabelsFileError(
                    f"{path}: labels file starts with a {name} byte-order mark but is not valid {name} "
                    f"(byte {exc.start + len(bom)}); save it as UTF-8"
                ) from None
    head = raw[:4096]
    if b"\x00" in head and (head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4):
        raise LabelsFileError(f"{path}: labels file looks like UTF-16 without a byte-order mark; save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_table(path: Path) -> pd.DataFrame:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabelsFileError(f"{path}: cannot read labels file ({exc.strerror or exc})") from None
    text = _decode_labels(path, raw)
    if not text.strip():
        raise LabelsFileError(f"{path}: labels file is empty")
    if "\x00" in text:
        raise LabelsFileError(f"{path}: labels file holds NUL bytes; it is not a text table (save it as CSV, UTF-8)")
    first_line = text.lstrip().splitlines()[0]
    try:
        delimiter = csv.Sniffer().sniff(first_line, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    try:
        table = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            on_bad_lines="skip",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise LabelsFileError(f"{path}: cannot parse labels file ({str(exc).splitlines()[0]})") from None
    table.attrs["original_names"] = {str(c).strip().lower(): str(c).strip() for c in table.columns}
    table.columns = [str(c).strip().lower() for c in table.columns]
    return table


def _first_present(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in columns), None)


def read_labels(
    csv_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    groups: GroupSpec | str | None = "auto",
) -> LabelTable:
    """Read a labels file in any accepted layout.

    Parameters
    ----------
    csv_path : path
        The labels file.
    data_dir : path, optional
        Directory the file names are relative to. When given, rows whose file
        is missing are skipped with the reason ``missing file``.
    groups : GroupSpec, str or None
        A :class:`~hmmclf.data.grouping.GroupSpec` or its text. ``"auto"``:
        a patient column (``patient_id``, ``patient``, ``pid``,
        ``subject``, ``subject_id``, ``PatientID``, ``Patient ID``,
        ``patient_number``; case, spaces, ``_`` and ``-`` ignored), else a
        recording column, else file names of a known scheme (ICBHI 2017,
        SPRSound), else ``"infer"``. ``"infer"``: groups are inferred from the
        audio at extraction (see :mod:`hmmclf.data.groups`; ``"infer:N"`` for
        N groups). ``"regex:PATTERN"``:
        the first capture group of PATTERN searched in each file name.
        ``None`` or ``"none"``: no groups. Any other value names the column.

    Returns
    -------
    LabelTable

    Raises
    ------
    LabelsFileError
        When the file cannot be read, is empty, or has no file or label columns.
    """
    path = Path(csv_path)
    table = _read_table(path)
    original_names = table.attrs.get("original_names", {})
    columns = _LayoutColumns.detect(path, list(table.columns))
    try:
        spec = GroupSpec.parse(groups)
    except ValueError as exc:
        raise LabelsFileError(str(exc)) from None
    group_col = _group_column(path, list(table.columns), spec)
    if group_col is not None:
        grouping = Grouping("column", column=original_names.get(group_col, group_col))
    else:
        grouping = Grouping("inferred", requested_groups=spec.n_groups) if spec.kind == "infer" else Grouping()
    base = Path(data_dir) if data_dir is not None else None
    kept: list[dict[str, object]] = []
    skipped: list[dict[str, str]] = []
    for record in table.to_dict("records"):
        name = str(record.get(columns.file, "")).strip()
        try:
            rel = check_relative_path(name)
            label_class = columns.label_class(record)
            # The check is lexical: a labels file cannot point outside the data
            # directory, but links the user placed inside it are followed (data
            # collections are often assembled from links).
            problem = _file_problem(base / rel) if base is not None else None
            if problem:
                raise ValueError(problem)
        except ValueError as exc:
            skipped.append({"file": name, "reason": str(exc)})
            continue
        group = None if group_col is None else (str(record.get(group_col, "")).strip() or None)
        kept.append({"file": rel, "class": label_class, "group": group})
    if not kept:
        raise LabelsFileError(f"{path}: no usable row ({_why_no_rows(skipped)})")
    rows = _without_duplicates(pd.DataFrame(kept, columns=["file", "class", "group"]), skipped)
    if not len(rows):
        raise LabelsFileError(f"{path}: no usable row ({_why_no_rows(skipped)})")
    if group_col is None and spec.kind in ("auto", "regex"):
        grouping = _groups_from_file_names(rows, spec.pattern)
    if group_col is not None and len(rows) and rows["group"].isna().any():
        # A clip without a group cannot be placed safely; give it its own group.
        missing = rows["group"].isna()
        rows.loc[missing, "group"] = "__nogroup__" + rows.loc[missing, "file"]
    return LabelTable(
        rows=rows,
        skipped=pd.DataFrame(skipped, columns=["file", "reason"]),
        layout=columns.layout,
        grouping=grouping,
    )


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a clip (``missing file``, ``a directory`` ...), or None when it can."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "missing file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno == errno.ENAMETOOLONG:
            return f"file name too long ({len(str(path))} characters)"
        if exc.errno == errno.ENOTDIR:
            return "missing file (a folder of its path is a file)"
        return f"cannot read: {exc.strerror or exc}"
    except ValueError as exc:  # embedded NUL, unencodable characters
        return f"not a usable file name ({exc})"
    if stat.S_ISDIR(mode):
        return "a directory, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def _why_no_rows(skipped: list[dict[str, str]]) -> str:
    """Why a labels file gave no usable row: 'it has a header but no data row', or 'all 3 rows skipped: ...'."""
    if not skipped:
        return "it has a header but no data row"
    counts: dict[str, int] = {}
    for entry in skipped:
        reason = re.sub(r"\s*[:('].*", "", entry["reason"]) or entry["reason"]
        counts[reason] = counts.get(reason, 0) + 1
    listed = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
    return f"all {len(skipped)} rows skipped: {listed}"


@dataclass(frozen=True)
class _LayoutColumns:
    """The layout of a labels file and the columns it reads."""

    layout: str
    file: str
    label: str | None
    crackle: str | None
    wheeze: str | None

    @classmethod
    def detect(cls, path: Path, columns: list[str]) -> _LayoutColumns:
        """Find the layout; raise LabelsFileError naming the file when there is none."""
        file_col = _first_present(columns, FILE_COLUMNS)
        label_col = _first_present(columns, LABEL_COLUMNS)
        crackle_col = _first_present(columns, CRACKLE_COLUMNS)
        wheeze_col = _first_present(columns, WHEEZE_COLUMNS)
        if label_col:
            layout = "label"
        elif "normal" in columns and crackle_col and wheeze_col:
            layout = "onehot"
        elif crackle_col and wheeze_col:
            layout = "icbhi"
        else:
            layout = None
        if file_col is None or layout is None:
            missing = "file" if file_col is None else "label"
            raise LabelsFileError(
                f"{path}: no {missing} column found (columns: {', '.join(columns) or 'none'}); {LAYOUTS_HELP}"
            )
        return cls(layout, file_col, label_col, crackle_col, wheeze_col)

    def label_class(self, record: dict) -> str:
        """The label class of one row; ValueError with the skip reason."""
        if self.layout == "label":
            return parse_label_text(record[self.label])
        labels = set()
        if _parse_flag(record[self.crackle], self.crackle):
            labels.add("crackle")
        if _parse_flag(record[self.wheeze], self.wheeze):
            labels.add("wheeze")
        if self.layout == "onehot" and _parse_flag(record["normal"], "normal"):
            labels.add("normal")
        if self.layout == "icbhi" and not labels:
            labels.add("normal")
        return labels_to_class(labels)


def _without_duplicates(rows: pd.DataFrame, skipped: list[dict[str, str]]) -> pd.DataFrame:
    """Duplicate rows of one file: keep the first when they agree, drop all when not (reasons to ``skipped``)."""
    if not len(rows):
        return rows
    dup_mask = rows.duplicated("file", keep=False)
    if not dup_mask.any():
        return rows
    conflicting = rows[dup_mask].groupby("file")["class"].nunique()
    conflicting = set(conflicting[conflicting > 1].index)
    first_of_file = set(rows.drop_duplicates("file").index)
    drop = []
    for idx, file in rows.loc[dup_mask, "file"].items():
        if file in conflicting:
            drop.append(idx)
            skipped.append({"file": file, "reason": "duplicate rows with conflicting labels"})
        elif idx not in first_of_file:
            drop.append(idx)
            skipped.append({"file": file, "reason": "duplicate row (first kept)"})
    return rows.drop(index=drop).reset_index(drop=True)


def _group_column(path: Path, columns: list[str], spec: GroupSpec) -> str | None:
    """The column holding the groups: the one named, else (``auto``) a patient, else a recording column."""
    by_normalised = {normalised_column_name(c): c for c in reversed(columns)}
    if spec.kind == "column":
        column = by_normalised.get(normalised_column_name(spec.column or ""))
        if column is None:
            raise LabelsFileError(f"{path}: group column {spec.column!r} not found (columns: {', '.join(columns)})")
        return column
    if spec.kind == "auto":
        for candidates in (PATIENT_COLUMNS, RECORDING_COLUMNS):
            column = next((by_normalised[c] for c in candidates if c in by_normalised), None)
            if column is not None:
                return column
    return None


def _groups_from_file_names(rows: pd.DataFrame, pattern_text: str | None) -> Grouping:
    """Fill ``rows["group"]`` from the file names: the user's ``regex:`` pattern, or a known scheme.

    Without a pattern, a known scheme is used only when every file name
    follows it; otherwise the groups are left to inference.
    """
    names = rows["file"].map(lambda f: PurePosixPath(f).name)
    if pattern_text is not None:
        pattern = re.compile(pattern_text)
        found = names.map(lambda n: m.group(1) if (m := pattern.search(n)) and m.group(1) else None)
        rows["group"] = found.where(found.notna(), "__nomatch__" + rows["file"])
        return Grouping("regex", scheme=pattern_text, unmatched=int(found.isna().sum()))
    for scheme, regex in FILENAME_PATTERNS.items():
        pattern = re.compile(regex)
        found = names.map(lambda n, p=pattern: m.group(1) if (m := p.match(n)) else None)
        if len(rows) and found.notna().all():
            rows["group"] = found
            return Grouping("filename", scheme=scheme)
    return Grouping("inferred", reason="no patient or recording column, no known file naming")
