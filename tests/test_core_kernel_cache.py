"""The kernel cache verifies what it loads and cleans up after killed builds (rims_rl.kernel_cache).

Each case runs RIMs in a subprocess (a damaged library could kill the process) with its own cache
($RIMS_RL_CACHE) and, mostly, a stand-in compiler ($CXX) that copies a library built once for this
module, so that a "build" takes no time. One test kills a build by the real compiler.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rims_rl import kernel, kernel_cache

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not kernel.available(), reason=f"compiled kernel unavailable: "
                                f"{kernel.unavailable_reason()}")

RUN_CORE = """
import json, warnings, torch
from rims_rl import RIMs, RIMsConfig, kernel
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    core = RIMs(5, RIMsConfig(num_units=4, k=2, unit_size=3))
    out, _, _ = core(torch.randn(3, 2, 5))
    out.sum().backward()
print(json.dumps({"path": core.last_path, "available": kernel.available(),
                  "warnings": [str(w.message) for w in seen if str(w.message).startswith("rims_rl:")]}))
"""
# Stands in for the compiler: finds "-o OUT", logs the call, then copies the library built for this
# module to OUT; FAKE_CXX_MODE=fail fails, =slow first runs a child process (as a compiler driver runs
# cc1plus) and waits.
FAKE_COMPILER = """#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = "-o" ] && out="$2"; shift; done
echo "$out" >> "$FAKE_CXX_LOG"
if [ "$FAKE_CXX_MODE" = fail ]; then
    echo "c++: fatal error: out of luck" >&2
    exit 1
fi
if [ "$FAKE_CXX_MODE" = slow ]; then
    sleep 300 &
    echo $$ $! > "$FAKE_CXX_PIDS"
    wait
fi
cp "$FAKE_CXX_LIBRARY" "$out"
"""


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    """(this machine's verified kernel library, a valid shared library that is not the kernel)."""
    good = kernel_cache.library_path()
    assert kernel_cache.damage(good) is None
    foreign = tmp_path_factory.mktemp("foreign") / "foreign.so"
    subprocess.run([kernel_cache.compiler(), "-shared", "-fPIC", "-x", "c++", "-", "-o", str(foreign)],
                   input='extern "C" int not_the_kernel() { return 1; }\n', text=True, check=True, timeout=120)
    return good, foreign


class Cache:
    """A private kernel cache with the stand-in compiler."""

    def __init__(self, root: Path, library: Path) -> None:
        self.dir = root / "cache"
        compiler = root / "fake-c++"
        compiler.write_text(FAKE_COMPILER)
        compiler.chmod(0o755)
        self.log, self.pids = root / "builds.log", root / "pids"
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), RIMS_RL_CACHE=str(self.dir), CXX=str(compiler),
                        FAKE_CXX_LOG=str(self.log), FAKE_CXX_PIDS=str(self.pids), FAKE_CXX_LIBRARY=str(library),
                        FAKE_CXX_MODE="copy")
        old = {name: os.environ.get(name) for name in ("RIMS_RL_CACHE", "CXX")}
        os.environ.update(RIMS_RL_CACHE=self.env["RIMS_RL_CACHE"], CXX=self.env["CXX"])
        try:
            self.library = kernel_cache.library_path()
        finally:
            for name, value in old.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        self.record = kernel_cache.record_path(self.library)

    def populate(self) -> None:
        """The library and its build record, as a build leaves them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.env["FAKE_CXX_LIBRARY"], self.library)
        self.record.write_text(json.dumps(record_of(self.library)))

    def run(self, **env) -> dict:
        """A process that runs a RIMs core: its exit code 0 and what it printed."""
        result = subprocess.run([sys.executable, "-c", RUN_CORE], env={**self.env, **env}, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def builds(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def temporaries(self) -> list[str]:
        return sorted(p.name for p in self.dir.glob("tmp*"))

    def start_slow_build(self) -> subprocess.Popen:
        """A process whose build is under way (the stand-in compiler and its child are running)."""
        env = {**self.env, "FAKE_CXX_MODE": "slow", "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints its stacks
        # Ctrl-C's default action, as under a terminal: a test run started in the background (nohup, `&`)
        # ignores SIGINT, and so would the builder, which inherits it
        process = subprocess.Popen([sys.executable, "-c", RUN_CORE], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_for(lambda: self.pids.exists() and len(self.pids.read_text().split()) == 2, 120)
        return process

    def compiler_pids(self) -> list[int]:
        return [int(p) for p in self.pids.read_text().split()]


@pytest.fixture
def leftovers():
    """Pids to kill after the test if they still run (a failing test must not leave compilers behind)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def record_of(library: Path) -> dict:
    data = library.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_first_build_writes_the_library_and_its_record_and_later_starts_load_it(tmp_path, libraries):
    cache = Cache(tmp_path, libraries[0])
    assert cache.run() == {"path": "cpp", "available": True, "warnings": []}
    assert json.loads(cache.record.read_text()) == record_of(cache.library)
    assert cache.builds() == 1 and cache.temporaries() == []
    assert cache.run() == {"path": "cpp", "available": True, "warnings": []}
    assert cache.builds() == 1  # loaded, not rebuilt


def damage_truncated(cache, foreign):
    data = cache.library.read_bytes()
    cache.library.write_bytes(data[:len(data) // 2])
    return "bytes, its build record says"


def damage_replaced(cache, foreign):
    cache.library.write_bytes(foreign.read_bytes())
    return "bytes, its build record says"


def damage_one_byte(cache, foreign):
    data = bytearray(cache.library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cache.library.write_bytes(bytes(data))
    return "differs from the one built (sha256 mismatch)"


def damage_record_missing(cache, foreign):
    cache.record.unlink()
    return "has no build record"


def damage_record_garbage(cache, foreign):
    cache.record.write_text("{not json")
    return "is unreadable"


def damage_record_mismatch(cache, foreign):
    record = json.loads(cache.record.read_text())
    cache.record.write_text(json.dumps({**record, "sha256": "0" * 64}))
    return "differs from the one built (sha256 mismatch)"


def damage_foreign_with_forged_record(cache, foreign):
    """A valid library that is not the kernel, with a record that matches it: it loads, without the ops."""
    cache.library.write_bytes(foreign.read_bytes())
    cache.record.write_text(json.dumps(record_of(cache.library)))
    return "is not the rims_rl kernel (no torch.ops.rims_rl_cpp.forward, backward, config_fields)"


@pytest.mark.parametrize("damage", [damage_truncated, damage_replaced, damage_one_byte, damage_record_missing, damage_record_garbage,
                                    damage_record_mismatch, damage_foreign_with_forged_record],
                         ids=lambda f: f.__name__.removeprefix("damage_"))
def test_a_damaged_or_foreign_library_is_rebuilt_with_one_warning(tmp_path, libraries, damage):
    """Loading a truncated library kills the process with SIGBUS, a foreign one lacks the operators: the
    process does neither, lives, warns once, rebuilds, and runs the kernel."""
    cache = Cache(tmp_path, libraries[0])
    cache.populate()
    reason = damage(cache, libraries[1])
    result = cache.run()
    assert result["path"] == "cpp" and result["available"], result
    assert len(result["warnings"]) == 1 and reason in result["warnings"][0], result["warnings"]
    assert result["warnings"][0].endswith("rebuilt it")
    assert cache.builds() == 1
    assert json.loads(cache.record.read_text()) == record_of(cache.library)  # repaired for the next start
    assert kernel_cache.damage(cache.library) is None and cache.temporaries() == []


def test_a_damaged_library_that_cannot_be_rebuilt_is_never_loaded(tmp_path, libraries):
    """Truncated library, a failing compiler: one warning naming both, and the pure-PyTorch steps run."""
    cache = Cache(tmp_path, libraries[0])
    cache.populate()
    damage_truncated(cache, libraries[1])
    result = cache.run(FAKE_CXX_MODE="fail")
    assert result["path"] == "fused" and not result["available"], result
    assert len(result["warnings"]) == 1, result["warnings"]
    assert "its build record says" in result["warnings"][0] and "out of luck" in result["warnings"][0]
    assert cache.temporaries() == []


def test_a_build_killed_by_sigkill_takes_its_compiler_along_and_the_next_build_removes_its_temp_file(
        tmp_path, libraries, leftovers):
    cache = Cache(tmp_path, libraries[0])
    builder = cache.start_slow_build()
    compilers = cache.compiler_pids()
    leftovers += compilers
    assert all(running(pid) for pid in compilers)
    assert len(cache.temporaries()) == 1  # the library being built
    builder.send_signal(signal.SIGKILL)
    builder.wait(timeout=30)
    wait_for(lambda: not any(running(pid) for pid in compilers), 5)
    left = cache.temporaries()
    assert len(left) == 1 and left[0].startswith(f"tmp-{cache.library.stem}-")  # nobody could remove it
    # temporary files of other builds: the old ones go, fresh ones (a build may be running) stay
    hour_ago = time.time() - 3600
    for name in ("tmpabcd_123.so", "tmp-rims_rl_cpp-0123456789abcdef-x1.so", "tmpfresh123.so"):
        (cache.dir / name).write_bytes(b"partial")
    for name in ("tmpabcd_123.so", "tmp-rims_rl_cpp-0123456789abcdef-x1.so"):
        os.utime(cache.dir / name, (hour_ago, hour_ago))
    (cache.dir / "tmp-notes.txt").write_text("not ours")
    os.utime(cache.dir / "tmp-notes.txt", (hour_ago, hour_ago))
    assert cache.run() == {"path": "cpp", "available": True, "warnings": []}
    assert cache.temporaries() == ["tmp-notes.txt", "tmpfresh123.so"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_during_a_build_remove_the_compiler_and_the_temp_file(tmp_path, libraries, signum,
                                                                                 leftovers):
    cache = Cache(tmp_path, libraries[0])
    builder = cache.start_slow_build()
    compilers = cache.compiler_pids()
    leftovers += compilers
    builder.send_signal(signum)
    try:
        _, stderr = builder.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # say where it hangs: faulthandler prints every thread's stack
        builder.send_signal(signal.SIGABRT)
        _, stderr = builder.communicate(timeout=30)
        pytest.fail(f"the build did not end within 30 s of {signum.name}; its stacks:\n{stderr[-5000:]}")
    assert builder.returncode == -signum, stderr[-3000:]  # ends as the signal ends it
    assert not any(running(pid) for pid in compilers)
    assert cache.temporaries() == []
    assert not cache.library.exists()


def process_group_of_child(parent: int) -> list[int]:
    """The processes in the process group led by ``parent``'s child (the build's group), live ones."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry.name)] = (fields[0], int(fields[1]), int(fields[2]))  # state, ppid, pgrp
    leaders = [pid for pid, (_, ppid, pgrp) in stats.items() if ppid == parent and pgrp == pid]
    return [pid for pid, (state, _, pgrp) in stats.items() if pgrp in leaders and state not in ("Z", "X")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dies with its parent on Linux only")
def test_a_real_compiler_dies_with_a_builder_killed_by_sigkill(tmp_path, leftovers):
    """The compiler driver's own children (cc1plus, as) go too: the whole process group is killed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), RIMS_RL_CACHE=str(tmp_path / "cache"))
    builder = subprocess.Popen([sys.executable, "-c", "from rims_rl import kernel; kernel.available()"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        group: list[int] = []

        def compiling() -> bool:  # the shell, the driver and the compiler proper
            group[:] = process_group_of_child(builder.pid)
            return len(group) >= 3

        wait_for(compiling, 120)
    finally:
        builder.kill()
        builder.wait(timeout=30)
    leftovers += group
    wait_for(lambda: not any(running(pid) for pid in group), 5)
