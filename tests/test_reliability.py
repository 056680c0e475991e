"""Reliability: hostile labels files and names, Ctrl-C, concurrent runs, locks, usage errors, a full disk."""

import errno
import os
import time

import pytest
from click.testing import CliRunner
from conftest import build_corpus

from hmmclf.app.cli import main
from hmmclf.data.labels import read_labels
from hmmclf.utils.errors import BusyError, HmmclfError, LabelsFileError
from hmmclf.utils.files import directory_lock


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def one_line_error(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert lines[-1].startswith(("hmmclf: error:", "hmmclf ")), lines
    return lines[-1]


@pytest.mark.parametrize(
    "content, why",
    [
        ("filename,label\n", "header but no data row"),
        ("filename,label\nmissing.wav,normal\n", "1 missing file"),
        ('filename,label\n"unterminated,normal\n', "cannot parse labels file|no usable row"),
    ],
)
def test_a_labels_file_without_a_usable_row_is_one_line_naming_it(tmp_path, content, why):
    (tmp_path / "data").mkdir()
    path = write(tmp_path / "labels.csv", content)
    with pytest.raises(LabelsFileError, match=why) as info:
        read_labels(path, tmp_path / "data")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_the_issue_header_only_case_through_extract(tmp_path):
    root = build_corpus(tmp_path / "c", per_patient=1, patients=1)
    write(root / "hdr.csv", "filename,patient_id,label\n")
    result = CliRunner().invoke(
        main,
        [
            "extract",
            "--data",
            str(root / "train"),
            "--labels",
            str(root / "hdr.csv"),
            "--out",
            str(tmp_path / "f"),
            "-j",
            "1",
        ],
    )
    assert "no usable row" in one_line_error(result)


def test_rows_that_cannot_be_files_are_skipped_with_what_they_are(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write(data / "ok.wav", b"x")
    (data / "x.wav").mkdir()
    os.symlink("loop.wav", data / "loop.wav")
    os.symlink("gone.wav", data / "dangling.wav")
    os.mkfifo(data / "fifo.wav")
    long_name = "x" * 5000 + ".wav"
    rows = ["ok.wav", "x.wav", "loop.wav", "dangling.wav", "fifo.wav", long_name, "nothere.wav"]
    path = write(tmp_path / "l.csv", "filename,label\n" + "".join(f"{r},normal\n" for r in rows))
    table = read_labels(path, data)
    assert table.rows["file"].tolist() == ["ok.wav"]
    reasons = dict(zip(table.skipped["file"], table.skipped["reason"]))
    assert reasons["x.wav"] == "a directory, not a file"
    assert reasons["loop.wav"] == "symbolic link loop"
    assert reasons["dangling.wav"] == "broken symbolic link"
    assert reasons["fifo.wav"] == "not a regular file"
    assert reasons[long_name].startswith("file name too long")
    assert reasons["nothere.wav"] == "missing file"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig", "utf-32"])
def test_labels_files_with_a_byte_order_mark_are_read(tmp_path, encoding):
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "a.wav", b"x")
    text = "filename,label\na.wav,wheeze\n"
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(encoding, b"")
    path = write(tmp_path / "l.csv", bom + text.encode(encoding))
    table = read_labels(path, tmp_path / "data")
    assert table.rows["class"].tolist() == ["wheeze"]


def test_utf16_without_a_byte_order_mark_is_refused_by_name(tmp_path):
    path = write(tmp_path / "l.csv", "filename,label\na.wav,normal\n".encode("utf-16-le"))
    with pytest.raises(LabelsFileError, match="UTF-16 without a byte-order mark"):
        read_labels(path)


def test_a_named_labels_file_that_does_not_exist_is_an_error(tmp_path):
    from types import SimpleNamespace

    from hmmclf.app.pipeline import _labels_for

    stored = write(tmp_path / "train.csv", "filename,label\n")
    cached = SimpleNamespace(meta={"labels": str(stored), "data_dir": str(tmp_path)})
    with pytest.raises(HmmclfError, match="trian.csv: labels file not found"):
        _labels_for(cached, tmp_path / "trian.csv", tmp_path, print, labels_given=True)
    # Not named (the default): the recorded one is used, as before.
    assert _labels_for(cached, tmp_path / "train2.csv", tmp_path, print)[0] == str(stored)


def test_two_report_directories_in_one_second_differ(tmp_path):
    first = __import__("hmmclf.app.pipeline", fromlist=["x"]).new_report_dir(tmp_path, "cv")
    second = __import__("hmmclf.app.pipeline", fromlist=["x"]).new_report_dir(tmp_path, "cv")
    assert first != second and first.is_dir() and second.is_dir()


def test_the_lock_file_goes_with_the_lock(tmp_path):
    with directory_lock(tmp_path, "extract"):
        assert (tmp_path / ".lock").exists()
        with pytest.raises(BusyError):
            with directory_lock(tmp_path, "extract"):
                pass
    assert not (tmp_path / ".lock").exists()
    with directory_lock(tmp_path, "extract"):  # and can be taken again
        pass


def test_click_usage_errors_are_one_line(tmp_path):
    runner = CliRunner()
    for args in (["compare", str(tmp_path / "nothere")], ["cv", "--folds", "1"], ["nosuchcommand"], ["--bogus"]):
        result = runner.invoke(main, args, prog_name="hmmclf")
        line = one_line_error(result)
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "-h" in line


def test_ctrl_c_in_the_calling_process_does_not_wait_for_workers():
    from hmmclf.utils.parallel import parallel_map

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel_map(_interrupt_here_sleep_there, [os.getpid()] * 4, n_jobs=2)
    assert time.monotonic() - started < 20  # a worker task sleeps 60 s


def _interrupt_here_sleep_there(parent_pid):
    if os.getpid() == parent_pid:
        time.sleep(0.5)  # let a worker start its task
        raise KeyboardInterrupt
    time.sleep(60)
    return 0


class _NoSpace:
    """os.fsync raising ENOSPC at its k-th call (every hmmclf file write fsyncs once, in _atomic)."""

    def __init__(self, k):
        self.k, self.calls = k, 0
        self.real = os.fsync

    def __call__(self, fd):
        self.calls += 1
        if self.calls == self.k:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(fd)


def _no_partial_files(directory):
    return [p.name for p in directory.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("command", ["extract", "train"])
def test_a_full_disk_at_each_write_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch, command):
    root = build_corpus(tmp_path / "c", per_patient=1, patients=2)
    out = tmp_path / "out"
    args = ["--data", str(root / "train"), "--labels", str(root / "train.csv"), "-j", "1"]
    args += (
        ["--out", str(out / "f")]
        if command == "extract"
        else ["--features", str(out / "f"), "--out", str(out / "m.npz"), "--states", "1"]
    )
    counter = _NoSpace(0)
    monkeypatch.setattr(os, "fsync", counter)
    assert CliRunner().invoke(main, [command, *args]).exit_code == 0
    writes = counter.calls
    assert writes >= 3
    for k in range(1, writes + 1):
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        monkeypatch.setattr(os, "fsync", _NoSpace(k))
        result = CliRunner().invoke(main, [command, *args])
        assert "No space left on device" in one_line_error(result)
        assert _no_partial_files(out) == []
        assert not list(out.rglob(".lock"))
