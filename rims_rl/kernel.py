"""The compiled sequence kernel (``csrc/sequence.cpp``): build on first use, cache, fall back.

``available()`` compiles the kernel once per machine and torch version with the C++ compiler
(``$CXX`` or ``c++``) into ``$RIMS_RL_CACHE`` (default ``$TORCH_EXTENSIONS_DIR/rims_rl`` or
``~/.cache/rims_rl``) and loads it as ``torch.ops.rims_rl_cpp``. Without a compiler, or if the build
fails, it warns once and returns False: ``RIMs`` then runs the pure-PyTorch steps. ``RIMS_RL_KERNEL=0``
turns the kernel off. The library is written under a temporary name and renamed into place (atomic),
and concurrent builds (e.g. pytest-xdist workers) wait on a file lock instead of compiling twice.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("csrc") / "sequence.cpp"
# Per-RIM products up to this many multiply-adds run as the kernel's own register tiles, larger ones as
# at::bmm. The tiles were faster than at::bmm (MKL) at every size measured, up to 26M multiply-adds
# (B=128); at::bmm stays for larger ones, where its weight packing pays off.
SMALL_PRODUCT = 1 << 28
_state: dict = {}  # "ok": bool once tried; "error": why not


def cache_dir() -> Path:
    """Where the built library lives."""
    if os.environ.get("RIMS_RL_CACHE"):
        return Path(os.environ["RIMS_RL_CACHE"])
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]) / "rims_rl"
    return Path.home() / ".cache" / "rims_rl"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _command(compiler: str, output: Path, openmp: bool = True) -> list[str]:
    """The build command. ``openmp``: ``-fopenmp`` (batch chunks on parallel threads, through torch's own
    OpenMP runtime, found by soname at load); else only ``-fopenmp-simd`` (chunks run one after another)."""
    from torch.utils import cpp_extension  # only needed to build

    lib = cpp_extension.library_paths()[0]
    return ([compiler, "-O3", "-march=native", "-fopenmp" if openmp else "-fopenmp-simd", "-std=c++20",
             "-shared", "-fPIC", "-w",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
            + [f"-I{p}" for p in cpp_extension.include_paths()]
            + [str(SOURCE), "-o", str(output), f"-L{lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib}"])


def _build() -> Path:
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler found ({compiler!r})")
    key = hashlib.sha256("\n".join([SOURCE.read_text(), torch.__version__, sys.version, compiler, _cpu_flags(),
                                    "openmp"]).encode()).hexdigest()[:16]
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / f"rims_rl_cpp-{key}.so"
    if library.exists():
        return library
    with open(directory / f"rims_rl_cpp-{key}.lock", "w") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no file locks on this OS: a second build just does the work twice
            pass
        if library.exists():
            return library
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
        os.close(fd)
        try:
            result = subprocess.run(_command(compiler, Path(tmp)), capture_output=True, text=True, timeout=600)
            if result.returncode != 0:  # e.g. a compiler without OpenMP: the same kernel, chunks in turn
                result = subprocess.run(_command(compiler, Path(tmp), openmp=False), capture_output=True, text=True,
                                        timeout=600)
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-2000:]}")
            os.replace(tmp, library)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return library


def available() -> bool:
    """Whether ``torch.ops.rims_rl_cpp`` is loaded (builds it on the first call; cached)."""
    if "ok" not in _state:
        if os.environ.get("RIMS_RL_KERNEL", "1") == "0":
            _state.update(ok=False, error="turned off by RIMS_RL_KERNEL=0")
            return False
        try:
            torch.ops.load_library(str(_build()))
            _state.update(ok=True, error=None)
        except Exception as error:  # no compiler, failed build, unloadable library: pure PyTorch
            _state.update(ok=False, error=str(error))
            warnings.warn(f"rims_rl: the compiled sequence kernel is unavailable ({error}); "
                          "RIMs runs its pure-PyTorch steps", RuntimeWarning, stacklevel=2)
    return _state["ok"]


def unavailable_reason() -> str | None:
    """Why the kernel is not loaded (None if it is or was not tried)."""
    return _state.get("error")


class SequenceKernel(torch.autograd.Function):
    """The whole recurrence as one autograd node: forward and backward are the compiled ops.

    Inputs as in ``csrc/sequence.cpp``; returns (out [T, K, B, H], final c [K, B, H] or empty,
    mask [T, K, B], probs [T, K, B], comm attention [T, K, K, B, heads] or empty).
    """

    @staticmethod
    def forward(ctx, h0, c0, values, keys, w_state, b_state, b_in, w_comm, w_out, b_out, init, starts, cfg,
                doubled_out):
        saved = torch.ops.rims_rl_cpp.forward(h0, c0, values, keys, w_state, b_state, b_in, w_comm, *doubled_out,
                                              init, starts, cfg)
        out, cprev, mask, probs, att = saved[:5]
        # Through save_for_backward, not as ctx attributes: the saved list holds the output, and an output
        # kept on ctx is a reference cycle (output -> C++ node -> ctx -> output) that not even the garbage
        # collector frees: every training call's buffers stayed in memory for the life of the process.
        ctx.save_for_backward(*saved, values, keys, w_state, w_comm, w_out, starts)
        ctx.num_saved = len(saved)
        ctx.cfg, ctx.lstm, ctx.comm = cfg, c0.numel() > 0, w_comm.numel() > 0
        c_final = cprev[-1].clone() if ctx.lstm else cprev
        ctx.mark_non_differentiable(mask, probs, att)
        return out, c_final, mask, probs, att

    @staticmethod
    def backward(ctx, d_out, d_c, _mask, _probs, _att):
        if torch.is_grad_enabled():
            raise RuntimeError("second-order gradients (create_graph=True) through the compiled RIMs kernel are "
                               "not supported: set core.backend = \"reference\" for them")
        tensors = ctx.saved_tensors
        saved, (values, keys, w_state, w_comm, w_out, starts) = tensors[:ctx.num_saved], tensors[ctx.num_saved:]
        out = saved[0]
        d_out = torch.zeros_like(out) if d_out is None else d_out.contiguous()
        d_hT = torch.zeros_like(out[0])
        if ctx.lstm:
            d_cT = torch.zeros_like(out[0]) if d_c is None else d_c.contiguous()
        else:
            d_cT = out.new_empty(0)
        grads = torch.ops.rims_rl_cpp.backward(list(saved), values, keys, w_state, w_comm, w_out, starts, d_out,
                                               d_hT, d_cT, ctx.cfg)
        d_h0, d_c0, d_values, d_keys, d_w_state, d_b_state, d_b_in, d_w_comm, d_w_out, d_b_out, d_init = grads
        comm = (d_w_comm, d_w_out, d_b_out) if ctx.comm else (None, None, None)
        return (d_h0, d_c0 if ctx.lstm else None, d_values, d_keys, d_w_state, d_b_state,
                None if ctx.lstm else d_b_in, *comm, d_init, None, None, None)


def double_update_columns(w_out: Tensor, b_out: Tensor) -> tuple[Tensor, Tensor]:
    """The output-gate weight and bias with the update columns (the last half) doubled, as the
    kernel's forward takes them (it computes tanh(x) as 2 sigmoid(2x) - 1). Not differentiable."""
    with torch.no_grad():
        if w_out.numel() == 0:
            return w_out, b_out
        scale = torch.ones(w_out.shape[-1], dtype=w_out.dtype, device=w_out.device)
        scale[w_out.shape[-1] // 2:] = 2.0
        return w_out * scale, b_out * scale


def run(h0: Tensor, c0: Tensor, values: Tensor, keys: Tensor, w_state: Tensor, b_state: Tensor, b_in: Tensor,
        w_comm: Tensor, w_out: Tensor, b_out: Tensor, init: Tensor, starts: Tensor, cfg: list[int],
        doubled_out: tuple[Tensor, Tensor] | None = None):
    """Run the kernel (an autograd node when gradients are on). ``doubled_out``:
    ``double_update_columns(w_out, b_out)`` if the caller has it cached."""
    doubled_out = double_update_columns(w_out, b_out) if doubled_out is None else doubled_out
    if torch.is_grad_enabled():
        return SequenceKernel.apply(h0, c0, values, keys, w_state, b_state, b_in, w_comm, w_out, b_out, init,
                                    starts, cfg, doubled_out)
    saved = torch.ops.rims_rl_cpp.forward(h0, c0, values, keys, w_state, b_state, b_in, w_comm, *doubled_out,
                                          init, starts, cfg)
    out, cprev, mask, probs, att = saved[:5]
    return out, (cprev[-1] if c0.numel() > 0 else cprev), mask, probs, att
