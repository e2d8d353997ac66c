"""Atomic writes: the old file survives a failed write, and no temp file is left behind."""
import os

import pytest

from agents.experiments.files import atomic_open, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["out.txt"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "wb") as f:
            f.write(b"partial")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_remove_stale_temp_files_keeps_other_files(tmp_path):
    from agents.experiments.files import atomic_write_text, remove_stale_temp_files

    atomic_write_text(tmp_path / "a" / "config.yaml", "x: 1\n")
    stale = [tmp_path / "a" / ".config.yaml.abc123.tmp", tmp_path / ".results.json.zz.tmp"]
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "a" / "config.yaml"]
    for path in stale + keep[:2]:
        path.write_text("x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_a_failed_write_names_the_target_not_the_temp_file(tmp_path):
    import errno

    target = tmp_path / "results.json"
    with pytest.raises(OSError) as caught:
        with atomic_open(target, "w") as f:
            f.write("{")
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk raises it
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_a_temp_file_that_cannot_be_created_is_reported_as_the_target(tmp_path, monkeypatch):
    import errno
    import tempfile

    def read_only(prefix, suffix, dir):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, f"{prefix}x1y2{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    target = tmp_path / "episode.gif"
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"GIF")
    assert caught.value.filename == str(target) and "Read-only file system" in str(caught.value)


def test_an_error_about_another_file_keeps_its_name(tmp_path):
    other = tmp_path / "missing" / "input.txt"
    with pytest.raises(FileNotFoundError) as caught:
        with atomic_open(tmp_path / "out.txt", "w") as f:
            f.write(other.read_text())
    assert caught.value.filename == str(other)
    assert os.listdir(tmp_path) == []
