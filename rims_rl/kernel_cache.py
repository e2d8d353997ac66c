"""Build, cache, verify and load the compiled RIMs kernel (``csrc/sequence.cpp``) as ``torch.ops.rims_rl_cpp``.

The library is compiled once per machine and torch version with ``$CXX`` (or ``c++``) into
``$RIMS_RL_CACHE`` (default ``$TORCH_EXTENSIONS_DIR/rims_rl`` or ``~/.cache/rims_rl``), named by a key
of the source, the build recipe, torch and Python versions, compiler and CPU flags.

Nothing in the cache is trusted: every build writes a record next to the library (``<name>.json``:
its size and sha256), and a library is loaded only when its size and hash match that record
(loading a truncated library kills the process with SIGBUS). After loading, the operators must exist.
A cached library that fails either check (truncated, replaced, no record) is rebuilt, and the caller
is told why (one warning, see ``rims_rl.kernel.available``).

Builds run under a file lock (concurrent first builds, e.g. pytest-xdist workers, wait instead of
compiling twice) into a temporary file that is removed on any exit of the build: an exception,
Ctrl-C, SIGTERM. The compiler runs in its own process group, which is killed with it; on Linux it
also dies with the building process, even one killed by SIGKILL (``PR_SET_PDEATHSIG``). A temporary
file that a killed builder could not remove is removed by the next build.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "sequence.cpp"
NAMESPACE = "rims_rl_cpp"
OPERATORS = ("forward", "backward", "config_fields")  # what a library must provide to be ours
# Part of the cache key: bump when the build command changes in a way the other parts do not show.
RECIPE = "openmp, record v1"
COMPILE_TIMEOUT_S = 600
# A temporary file of another key's build is stale after this long (two attempts of COMPILE_TIMEOUT_S
# fit in it). Temporary files of this key are stale whenever this process holds its lock.
STALE_AFTER_S = 30 * 60
_TEMP_PREFIX = "tmp-"
_LEGACY_TEMP = re.compile(r"tmp[a-z0-9_]{8}\.so")  # tempfile.mkstemp(suffix=".so") of earlier versions
# A POSIX shell as the compiler's parent, in a process group of its own: on SIGTERM it kills the whole
# group, so compiler subprocesses (cc1plus, as, ld) go too, not only the driver.
_GROUP_LEADER = ["/bin/sh", "-c", 'trap "kill -KILL 0" TERM; "$@" & wait $!', "rims_rl-build"]
_PR_SET_PDEATHSIG = 1


class BuildError(RuntimeError):
    """The kernel could not be built or loaded (the caller falls back to pure PyTorch)."""


def cache_dir() -> Path:
    """Where the built library lives."""
    if os.environ.get("RIMS_RL_CACHE"):
        return Path(os.environ["RIMS_RL_CACHE"])
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]) / "rims_rl"
    return Path.home() / ".cache" / "rims_rl"


def compiler() -> str:
    """The C++ compiler to build with: ``$CXX`` or ``c++``."""
    return os.environ.get("CXX", "c++")


def library_path() -> Path:
    """The cache path of the library for this source, torch, Python, compiler and CPU."""
    key = hashlib.sha256("\n".join([SOURCE.read_text(), RECIPE, torch.__version__, sys.version, compiler(),
                                    _cpu_flags()]).encode()).hexdigest()[:16]
    return cache_dir() / f"{NAMESPACE}-{key}.so"


def record_path(library: Path) -> Path:
    """The build record of ``library``: its size and sha256, written when it was built."""
    return library.with_suffix(".json")


def load() -> str | None:
    """Load the cached library into ``torch.ops.rims_rl_cpp``, building it first if it is missing or fails
    verification. Returns None, or why the cached library was rebuilt (for one warning).

    :raise BuildError: no compiler, a failed build, or a library that does not load even when rebuilt;
        the message includes why a cached library was rebuilt.
    """
    library = library_path()
    problem = damage(library)
    if problem is not None:
        with _build_lock(library):
            problem = damage(library)  # another process may have built it meanwhile
            if problem is not None:
                _rebuild(library, None if problem == "missing" else problem)
    try:
        _load_verified(library)
    except BuildError as error:  # verified, yet not our library or not loadable: rebuild it once
        problem = str(error)
        with _build_lock(library):
            _rebuild(library, problem)
            # The dynamic loader returns the library it already opened under a path: open the new one
            # under a name of its own (removed once loaded).
            alias = library.with_name(f"{_TEMP_PREFIX}{library.stem}-{os.getpid()}-load.so")
            try:
                try:
                    os.link(library, alias)
                except OSError:  # a file system without hard links
                    shutil.copyfile(library, alias)
                _load_verified(alias, record_path(library))
            except (OSError, BuildError) as again:
                raise BuildError(f"{problem}; the rebuilt library failed too: {again}") from None
            finally:
                with contextlib.suppress(OSError):
                    os.remove(alias)
    return None if problem in (None, "missing") else f"{problem}: rebuilt it"


def _rebuild(library: Path, problem: str | None) -> None:
    """``_build``, with ``problem`` (why the cached library is rebuilt) in the error if it fails."""
    try:
        _build(library)
    except BuildError as error:
        raise BuildError(error if problem is None else f"{problem}; rebuilding it failed: {error}") from None


def damage(library: Path, record: Path | None = None) -> str | None:
    """Why ``library`` must not be loaded ("missing" if it was never built), or None if its size and
    sha256 match its build record (``record``, default: its own)."""
    if not library.exists():
        return "missing"
    record = record_path(library) if record is None else record
    try:
        expected = json.loads(record.read_text())
        size, digest = int(expected["size"]), str(expected["sha256"])
    except FileNotFoundError:
        return f"the cached kernel {library} has no build record ({record.name})"
    except (OSError, ValueError, TypeError, KeyError) as error:
        return f"the build record {record} of the cached kernel is unreadable ({error!r})"
    actual_size, actual_digest = _size_and_digest(library)
    if actual_size != size:
        return f"the cached kernel {library} has {actual_size} bytes, its build record says {size}"
    if actual_digest != digest:
        return f"the cached kernel {library} differs from the one built (sha256 mismatch)"
    return None


def _load_verified(library: Path, record: Path | None = None) -> None:
    """Load ``library`` if it matches ``record`` (default: its own) right now, then check the operators."""
    problem = damage(library, record)
    if problem is not None:
        raise BuildError(problem)
    try:
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError) as error:
        raise BuildError(f"the cached kernel {library} does not load ({error})") from None
    missing = [name for name in OPERATORS if not hasattr(getattr(torch.ops, NAMESPACE), name)]
    if missing:
        raise BuildError(f"the cached kernel {library} is not the rims_rl kernel (no torch.ops.{NAMESPACE}."
                         f"{', '.join(missing)})")


def _build(library: Path) -> None:
    """Compile the library into ``library`` and write its build record (caller holds the build lock)."""
    cxx = compiler()
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler found ({cxx!r})")
    _remove_stale_temporaries(library)
    with _signals_as_exceptions():  # outermost: the cleanup below runs before a SIGTERM ends the process
        fd, name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{library.stem}-", suffix=".so", dir=library.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            error = _compile(_command(cxx, tmp))
            if error is not None:  # e.g. a compiler without OpenMP: the same kernel, batch chunks in turn
                error = _compile(_command(cxx, tmp, openmp=False))
            if error is not None:
                raise BuildError(f"{cxx} failed: {error}")
            size, digest = _size_and_digest(tmp)
            _write_atomically(record_path(library), json.dumps({"size": size, "sha256": digest}) + "\n")
            os.replace(tmp, library)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)


def _compile(command: list[str]) -> str | None:
    """Run the compiler; None on success, else the end of its error output. The compiler's whole process
    group is killed if this returns by an exception (timeout, Ctrl-C, SIGTERM) and, on Linux, if this
    process dies (its parent shell gets SIGTERM then, and kills the group)."""
    process = subprocess.Popen(_GROUP_LEADER + command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_die_with_parent())
    try:
        _, stderr = process.communicate(timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timed out after {COMPILE_TIMEOUT_S} s"
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return None if process.returncode == 0 else (stderr.strip()[-2000:] or f"exit code {process.returncode}")


def _die_with_parent():
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux), else None.

    Resolved here, in the parent: the child of a fork only makes one foreign call and a comparison."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return preexec


class _Terminated(BaseException):
    """SIGTERM arrived during a build (raised so that the ``finally`` blocks clean up)."""


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[None]:
    """While compiling, SIGTERM with its default action (die at once, no cleanup) raises instead, so the
    compiler and the temporary file go; then the signal is delivered again with its default action, and
    the process ends as it would have. A handler the program installed is left alone (its program
    decides), as is any other thread's build (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminated(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        if signal.getsignal(signal.SIGTERM) is terminated:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _build_lock(library: Path) -> Iterator[None]:
    """An exclusive lock on ``library``'s build (a no-op where the OS has no ``fcntl``)."""
    library.parent.mkdir(parents=True, exist_ok=True)
    with open(library.with_suffix(".lock"), "w") as lock:
        try:
            import fcntl
        except ImportError:  # no file locks on this OS: a second build just does the work twice
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _remove_stale_temporaries(library: Path) -> None:
    """Remove temporary files left by builders that were killed: those of this library (its lock is
    held, so no build of it is running) and those of other libraries older than ``STALE_AFTER_S``,
    including the ``tmpXXXXXXXX.so`` names of earlier versions of this module."""
    now = time.time()
    ours = f"{_TEMP_PREFIX}{library.stem}-"
    for path in library.parent.glob("tmp*"):
        if not (path.name.startswith(f"{_TEMP_PREFIX}{NAMESPACE}-") or _LEGACY_TEMP.fullmatch(path.name)):
            continue
        with contextlib.suppress(OSError):
            if path.name.startswith(ours) or now - path.stat().st_mtime > STALE_AFTER_S:
                path.unlink()


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{path.stem}-", suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # readable by whoever shares the cache, as the library is
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _size_and_digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _command(cxx: str, output: Path, openmp: bool = True) -> list[str]:
    """The build command. ``openmp``: ``-fopenmp`` (batch chunks on parallel threads, through torch's own
    OpenMP runtime, found by soname at load); else only ``-fopenmp-simd`` (chunks run one after another)."""
    from torch.utils import cpp_extension  # only needed to build

    lib = cpp_extension.library_paths()[0]
    return ([cxx, "-O3", "-march=native", "-fopenmp" if openmp else "-fopenmp-simd", "-std=c++20",
             "-shared", "-fPIC", "-w",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
            + [f"-I{p}" for p in cpp_extension.include_paths()]
            + [str(SOURCE), "-o", str(output), f"-L{lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib}"])
