"""Atomic file writes: every file the experiment layer writes goes through here.

A write goes to a temp file in the same dir, is flushed and fsynced, then ``os.replace``d over the
target, so a crash or a full disk at any moment leaves either the old file or the new one, never a
half-written one. The temp file is removed on any failure.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` default utf-8). Missing parent dirs are
    created. The new file gets the usual permissions of a new file (0666 minus the umask).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise _naming(e, path, None) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise _naming(e, path, tmp)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def _naming(error: OSError, path: Path, tmp: str | None) -> OSError:
    """``error`` naming the target ``path`` where it names the temp file ``tmp`` or no file at all (a failed
    write of the temp file): the user knows the target, never the temp file, which is gone by then."""
    if error.filename is None or error.filename == tmp or (tmp is None and Path(error.filename).parent == path.parent):
        error.filename, error.filename2 = str(path), None
    return error


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (utf-8) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temp files that :func:`atomic_open` leaves when its process is killed mid-write.

    They are ``.<name>.<random>`` + ``TEMP_SUFFIX`` anywhere below ``directory``; only call this
    while no other process writes there. Returns the removed paths.
    """
    removed = []
    for path in sorted(Path(directory).rglob(f".*{TEMP_SUFFIX}")):
        if path.is_file() and path.name.count(".") >= 3:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def fsync_dir(directory: str | os.PathLike) -> None:
    """Persist a rename in ``directory`` (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
