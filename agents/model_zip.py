"""Reading the members of a model zip from anyone in bounded memory, with one-line errors.

A member's size is checked in the zip directory before it is decompressed
(:func:`max_member_bytes`: ``RIMS_RL_MAX_MODEL_MB``, default :data:`DEFAULT_MAX_MODEL_MB`), and
decompression runs in chunks that stop at that size even where the directory understates it.
Only the two methods whose output can be bounded chunk by chunk are read (stored, deflated: what
rims-rl and SB3 write); bzip2 and lzma can expand one chunk by a factor of thousands.
Encrypted or unknown-method members, bad CRCs and truncated or empty zips raise
:class:`CorruptModelError`; a member over the limit raises :class:`ModelTooLargeError`.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib

MAX_MODEL_MB_VAR = "RIMS_RL_MAX_MODEL_MB"
DEFAULT_MAX_MODEL_MB = 256
CHUNK_BYTES = 1 << 20
READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# What zipfile and zlib raise for a damaged archive (an OSError with an errno is a real I/O error).
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError)


class CorruptModelError(ValueError):
    """A model zip that is damaged, encrypted, compressed in a way not read, or not a zip at all."""


class ModelTooLargeError(ValueError):
    """A model zip member larger than :func:`max_member_bytes` allows."""


def max_member_bytes() -> int:
    """The largest member a model zip may hold, uncompressed: ``RIMS_RL_MAX_MODEL_MB`` (default 256) MB.

    :return: the limit in bytes (ValueError for a value that is not a number > 0)
    """
    text = os.environ.get(MAX_MODEL_MB_VAR, "").strip()
    if not text:
        return DEFAULT_MAX_MODEL_MB * 2**20
    try:
        mb = float(text)
    except ValueError:
        mb = float("nan")
    if not 0 < mb < 2**40:
        raise ValueError(f"{MAX_MODEL_MB_VAR}={text!r} is invalid; valid: a number of MB > 0 "
                         f"(default {DEFAULT_MAX_MODEL_MB})")
    return int(mb * 2**20)


def _mb(size: int) -> str:
    mb = size / 2**20
    return f"{mb:.3g} MB" if mb < 1000 else f"{mb:,.0f} MB"


def _is_io_error(error: BaseException) -> bool:
    """True for an OSError of the file system (it has an errno), False for zip or bz2 data errors."""
    return isinstance(error, OSError) and error.errno is not None


def open_zip(file: io.BufferedIOBase) -> zipfile.ZipFile:
    """``file`` read as a zip (CorruptModelError for an empty, truncated or non-zip file)."""
    try:
        return zipfile.ZipFile(file)
    except (*ZIP_ERRORS, OSError) as e:
        if _is_io_error(e):
            raise
        raise CorruptModelError(f"not a zip file ({type(e).__name__}: {_first_line(e)})") from None


def check_member(info: zipfile.ZipInfo, limit: int | None = None) -> None:
    """Check a member's directory entry before anything is decompressed.

    :param limit: its size limit in bytes (default :func:`max_member_bytes`)
    """
    if info.flag_bits & 0x1:
        raise CorruptModelError(f"member {info.filename!r} is encrypted")
    if info.compress_type not in READABLE_METHODS:
        method = zipfile.compressor_names.get(info.compress_type, "unknown")
        raise CorruptModelError(f"member {info.filename!r} uses compression method {info.compress_type} ({method}); "
                                f"read: {', '.join(READABLE_METHODS.values())}")
    default = max_member_bytes()
    limit = default if limit is None else limit
    if info.file_size > limit:
        raise ModelTooLargeError(_too_large(info.filename, f"{_mb(info.file_size)} uncompressed", limit, default))


def _too_large(name: str, size: str, limit: int, default: int) -> str:
    raise_it = (f"; if you trust the file, raise the limit with {MAX_MODEL_MB_VAR}=<MB>" if limit == default
                else "")
    return f"member {name!r} is {size}, above the limit of {_mb(limit)}{raise_it}"


def read_member(archive: zipfile.ZipFile, name: str, limit: int | None = None) -> bytes:
    """The bytes of member ``name``, decompressed in chunks that stop at its size limit.

    :param limit: the size limit in bytes (default :func:`max_member_bytes`)
    :return: the member's content (CorruptModelError if it is missing, damaged or not as its
        directory entry says; ModelTooLargeError if it is above the limit)
    """
    default = max_member_bytes()
    limit = default if limit is None else limit
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise CorruptModelError(f"member {name!r} is missing") from None
    check_member(info, limit)
    chunks, total = [], 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK_BYTES):
                total += len(chunk)
                if total > limit:  # zipfile stops at the directory's size (checked above); this does not rely on it
                    raise ModelTooLargeError(_too_large(name, f"over {_mb(limit)} once decompressed", limit, default))
                chunks.append(chunk)
    except (CorruptModelError, ModelTooLargeError):
        raise
    except (*ZIP_ERRORS, OSError) as e:
        if _is_io_error(e):
            raise
        reason = "fails its CRC check" if "CRC" in str(e) else f"is damaged ({type(e).__name__}: {_first_line(e)})"
        raise CorruptModelError(f"member {name!r} {reason}") from None
    if total != info.file_size:
        raise CorruptModelError(f"member {name!r} holds {total} bytes, its directory entry says {info.file_size}")
    return b"".join(chunks)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
