"""Full, size-limited and read-only file systems: one line, exit 2, and every old file whole."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def evaluated_copy(trained_run, run_main):
    """``evaluated_copy(root)``: a copy of the trained run at ``root/lstm/seed0``, evaluated once (so it has
    results to lose)."""
    def copy(root: Path) -> Path:
        run = root / "lstm" / "seed0"
        shutil.copytree(trained_run, run)
        assert run_main(["evaluate", "--model", run, "--shifts", "none", "--episodes", 1]) == 0
        return run
    return copy


def _mount_tmpfs(path: Path, size: str) -> None:
    """Mount a small tmpfs at ``path`` (skip the test where mounting is not permitted)."""
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}); "
                    f"the RLIMIT_FSIZE test covers full disks")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(disk: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass


def _limit_file_size(limit: int):
    def apply() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _without(snapshot: dict, name: str) -> dict:
    return {p: c for p, c in snapshot.items() if p.name != name}


def _without_tb(snapshot: dict, root: Path) -> dict:
    """The snapshot less TensorBoard files (TensorBoard may append what fits on a full disk)."""
    return {p: c for p, c in snapshot.items() if "tb" not in p.relative_to(root).parts}


def test_a_full_disk_keeps_every_old_file_whole(tmp_path, capsys, tiny_config, evaluated_copy, snapshot, refused):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "16m")
    try:
        run = evaluated_copy(disk)
        _fill(disk)
        before = _without(snapshot(disk), "filler")
        capsys.readouterr()
        for args in (["evaluate", "--model", run, "--shifts", "none", "--episodes", 2],
                     ["compare", run, "--out", disk / "cmp"],
                     ["train", "--config", tiny_config(tmp_path), "--logdir", disk / "new", "--no-progress"],
                     ["train", "--resume", run, "--timesteps", 64, "--no-progress"],
                     ["record", "--model", run, "--max-steps", 5]):
            line = refused(args, ["No space left on device"])
            assert ".tmp" not in line  # the target is named, never the temp file
        assert not (disk / "new").exists()
        after = _without(snapshot(disk), "filler")
        assert _without_tb(after, disk) == _without_tb(before, disk)
        assert not list(disk.rglob("*.tmp"))
    finally:
        _umount(disk)


def test_a_file_size_limit_acts_like_a_full_disk(tmp_path, tiny_config, evaluated_copy, snapshot, run_script,
                                                 one_line_error):
    """RLIMIT_FSIZE in the child: every write beyond 64 bytes fails (EFBIG), as on a full disk."""
    run = evaluated_copy(tmp_path)
    tiny_config(tmp_path)
    before = snapshot(tmp_path)
    limited = _limit_file_size(64)
    result = run_script(["evaluate", "--model", run, "--shifts", "none", "--episodes", 2], timeout=180,
                        preexec_fn=limited)
    one_line_error(result.returncode, result.stderr, ["File too large"])
    result = run_script(["train", "--config", tmp_path / "tiny.yaml", "--logdir", tmp_path / "new", "--no-progress"],
                        timeout=180, preexec_fn=limited)
    one_line_error(result.returncode, result.stderr, ["File too large"])
    assert not (tmp_path / "new").exists()
    after = snapshot(tmp_path)
    assert _without_tb(after, tmp_path) == _without_tb(before, tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_read_only_file_system(tmp_path, capsys, tiny_config, evaluated_copy, snapshot, refused):
    """Root ignores file modes, so the test uses a read-only mount."""
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "16m")
    try:
        run = evaluated_copy(disk)
        result = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot remount read-only: {result.stderr.strip()}")
        before = snapshot(disk)
        capsys.readouterr()
        for args in (["evaluate", "--model", run, "--shifts", "none", "--episodes", 1],
                     ["record", "--model", run, "--max-steps", 3],
                     ["compare", run],
                     ["train", "--resume", run, "--timesteps", 64, "--no-progress"],
                     ["train", "--config", tiny_config(tmp_path), "--logdir", disk / "new", "--no-progress"]):
            line = refused(args, ["Read-only file system"])
            assert ".tmp" not in line  # the target is named, never the temp file
        assert snapshot(disk) == before
    finally:
        _umount(disk)
