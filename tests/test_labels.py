from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hmmclf.data.labels import check_relative_path, read_labels
from hmmclf.task.classes import labels_to_class, parse_label_text
from hmmclf.utils.errors import LabelsFileError


def write(tmp_path: Path, text: str, name: str = "labels.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


@pytest.mark.parametrize(
    "text, state",
    [
        ("normal", "normal"),
        ("Wheeze", "wheeze"),
        ("crackles", "crackle"),
        ("both", "both"),
        ("wheeze+crackle", "both"),
        ("crackle,wheeze", "both"),
        ("crackle;wheeze", "both"),
        ("crackles & wheezes", "both"),
        (" crackle / wheeze ", "both"),
    ],
)
def test_parse_label_text(text, state):
    assert parse_label_text(text) == state


@pytest.mark.parametrize(
    "text, reason", [("", "no label"), ("rhonchi", "unknown label"), ("normal+wheeze", "contradictory")]
)
def test_parse_label_text_rejects(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_label_text(text)


def test_labels_to_state():
    assert labels_to_class({"crackle", "wheeze"}) == "both"
    assert labels_to_class({"normal"}) == "normal"
    with pytest.raises(ValueError, match="contradictory"):
        labels_to_class({"normal", "crackle"})


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.wav", "a/../../x.wav", "C:\\x.wav", "\\\\server\\x.wav", ""])
def test_check_relative_path_refuses(name):
    with pytest.raises(ValueError):
        check_relative_path(name)


def test_check_relative_path_accepts_subdirectories():
    assert check_relative_path("sub\\a.wav") == "sub/a.wav"
    assert check_relative_path("./a.wav") == "a.wav"


def test_label_layout(tmp_path):
    path = write(tmp_path, "File,Label,Patient_ID\na.wav,normal,1\nb.wav,wheeze+crackle,2\nc.wav,bogus,3\n")
    table = read_labels(path)
    assert table.layout == "label"
    assert table.grouping.column == "Patient_ID" and table.grouping.patients
    assert table.rows["class"].tolist() == ["normal", "both"]
    assert table.skipped["reason"].tolist() == ["unknown label 'bogus'"]


def test_icbhi_layout_with_bom_and_semicolons(tmp_path):
    path = write(
        tmp_path, "\ufefffilename;crackles;wheezes;recording\na.wav;0;0;r1\nb.wav;1;0;r1\nc.wav;1;1;r2\nd.wav;2;0;r2\n"
    )
    table = read_labels(path)
    assert table.layout == "icbhi"
    assert table.grouping.column == "recording"
    assert table.rows["class"].tolist() == ["normal", "crackle", "both"]
    assert "unknown value" in table.skipped["reason"].iloc[0]


def test_onehot_layout_contradictions_and_no_label(tmp_path):
    path = write(tmp_path, "fname,normal,wheeze,crackle\na.wav,1,0,0\nb.wav,0,1,0\nc.wav,1,1,0\nd.wav,0,0,0\n")
    table = read_labels(path, groups="auto")
    assert table.layout == "onehot"
    assert table.grouping.column is None
    assert table.rows["class"].tolist() == ["normal", "wheeze"]
    reasons = table.skipped.set_index("file")["reason"]
    assert "contradictory" in reasons["c.wav"]
    assert reasons["d.wav"] == "no label"


def test_duplicates_and_escaping_paths_and_missing_files(tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (data / name).write_bytes(b"x")
    (tmp_path / "outside.wav").write_bytes(b"x")
    path = write(
        tmp_path,
        "filename,label\na.wav,normal\na.wav,normal\nb.wav,normal\nb.wav,wheeze\nc.wav,crackle\n"
        "../outside.wav,normal\n/abs.wav,normal\nmissing.wav,normal\n",
    )
    table = read_labels(path, data_dir=data)
    assert table.rows["file"].tolist() == ["a.wav", "c.wav"]
    reasons = dict(zip(table.skipped["file"], table.skipped["reason"]))
    assert reasons["../outside.wav"] == "path leaves the data directory"
    assert reasons["/abs.wav"].startswith("absolute path")
    assert reasons["missing.wav"] == "missing file"
    assert reasons["b.wav"] == "duplicate rows with conflicting labels"
    assert (table.skipped["reason"] == "duplicate row (first kept)").sum() == 1


def test_links_placed_in_the_data_dir_are_followed(tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    (tmp_path / "elsewhere.wav").write_bytes(b"x")
    (data / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    table = read_labels(write(tmp_path, "filename,label\nlink.wav,normal\n../elsewhere.wav,normal\n"), data_dir=data)
    assert table.rows["file"].tolist() == ["link.wav"]
    assert table.skipped["reason"].tolist() == ["path leaves the data directory"]


def test_unusable_files_are_one_line_errors(tmp_path):
    with pytest.raises(LabelsFileError, match="empty"):
        read_labels(write(tmp_path, "", "empty.csv"))
    with pytest.raises(LabelsFileError, match=r"no label column found \(columns: filename, foo\)"):
        read_labels(write(tmp_path, "filename,foo\na.wav,1\n", "nolabel.csv"))
    with pytest.raises(LabelsFileError, match="no file column"):
        read_labels(write(tmp_path, "label\nnormal\n", "nofile.csv"))
    with pytest.raises(LabelsFileError, match="group column 'site' not found"):
        read_labels(write(tmp_path, "filename,label\na.wav,normal\n", "g.csv"), groups="site")
    with pytest.raises(LabelsFileError, match="cannot read"):
        read_labels(tmp_path / "does-not-exist.csv")


def test_groups_none_and_named(tmp_path):
    path = write(tmp_path, "filename,label,patient_id,recording\na.wav,normal,1,r1\n")
    assert read_labels(path, groups="none").grouping.column is None
    assert read_labels(path, groups="Recording").grouping.column == "recording"


@given(st.text(max_size=30))
def test_parse_label_text_never_crashes_otherwise(text):
    try:
        state = parse_label_text(text)
    except ValueError:
        return
    assert state in ("normal", "crackle", "wheeze", "both")


@given(st.text(max_size=40))
def test_check_relative_path_never_escapes(name):
    try:
        rel = check_relative_path(name)
    except ValueError:
        return
    assert not rel.startswith("/")
    assert ".." not in rel.split("/")


@pytest.mark.parametrize(
    "header, expected",
    [
        ("PatientID", "PatientID"),
        ("Patient ID", "Patient ID"),
        ("pid", "pid"),
        ("subject_id", "subject_id"),
        ("patient-number", "patient-number"),
    ],
)
def test_patient_columns_are_recognised_before_recording(tmp_path, header, expected):
    path = tmp_path / "labels.csv"
    path.write_text(f"file,label,recording,{header}\na.wav,normal,r1,7\nb.wav,wheeze,r2,7\n")
    table = read_labels(path, groups="auto")
    assert table.grouping.kind == "column" and repr(expected) in table.grouping.describe()
    assert table.rows["group"].tolist() == ["7", "7"]


def test_groups_from_known_file_names_regex_and_inference(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("file,label\n101_1b1_Al_sc_Meditron_3.wav,normal\n102_2b3_Ar_mc_AKGC417L_0.wav,both\n")
    table = read_labels(path)
    assert table.grouping.kind == "filename" and "ICBHI" in table.grouping.describe()
    assert table.grouping.patients
    assert table.rows["group"].tolist() == ["101", "102"]
    path.write_text("file,label\n40138127_14.7_0_p3_139_0.flac,normal\n63613821_9.2_1_p3_1157_2.flac,wheeze\n")
    assert read_labels(path).rows["group"].tolist() == ["40138127", "63613821"]
    path.write_text("file,label\nab12.wav,normal\n9f3e.wav,wheeze\n")
    table = read_labels(path)
    assert table.grouping.kind == "inferred" and table.rows["group"].isna().all()
    path.write_text("file,label\nsubj-4_a.wav,normal\nsubj-9_b.wav,wheeze\nother.wav,normal\n")
    table = read_labels(path, groups=r"regex:subj-(\d+)_")
    assert table.grouping.kind == "regex" and table.rows["group"].tolist()[:2] == ["4", "9"]
    assert "1 names did not match" in table.grouping.describe()
    with pytest.raises(LabelsFileError, match="capture group"):
        read_labels(path, groups="regex:subj-")
    assert read_labels(path, groups="none").grouping.kind == "none"
    with pytest.raises(LabelsFileError, match="group column 'site' not found"):
        read_labels(path, groups="site")
