"""The compiled sequence kernel (rims_rl.kernel, backend "cpp") equals the pure-PyTorch reference on
outputs, info and gradients for every config axis it covers, and the package falls back to pure
PyTorch when no compiler is present."""
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rims_rl import RIMs, RIMsConfig, kernel

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(not kernel.available(), reason=f"compiled kernel unavailable: "
                                  f"{kernel.unavailable_reason()}")

AXES = [dict(cell=c, k=k, communication=comm, selection=sel, across_renormalise=ren, comm_inactive=src,
             block_inactive_grad=block)
        for c, k, comm, (sel, ren), src, block in itertools.product(
            ["lstm", "gru"], [2, 4], [True, False], [("null", True), ("across", True), ("across", False)],
            ["tentative", "kept"], [True, False])]


def make(dtype=torch.float64, **fields):
    torch.manual_seed(0)
    cfg = RIMsConfig(num_units=4, unit_size=5, input_key_size=6, input_value_size=8, comm_key_size=3,
                     comm_value_size=4, num_comm_heads=2, **fields)
    return RIMs(7, cfg).to(dtype)


def run(core, backend, x, starts, state):
    core.backend = backend
    core.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    state = tuple(s.detach().clone().requires_grad_(True) for s in state)
    out, final, info = core(x, state, starts)
    (out.square().sum() + sum(f.sin().sum() for f in final)).backward()
    assert core.last_path == backend
    params = {n: p.grad for n, p in core.named_parameters()}
    return out, final, info, x.grad, [s.grad for s in state], params


def assert_same(fast, ref, **tol):
    out, final, info, gx, gs, gp = fast
    out_r, final_r, info_r, gx_r, gs_r, gp_r = ref
    torch.testing.assert_close(out, out_r, **tol)
    for a, b in zip(final, final_r):
        torch.testing.assert_close(a, b, **tol)
    assert torch.equal(info.mask, info_r.mask)
    torch.testing.assert_close(info.input_attention, info_r.input_attention, **tol)
    if info_r.comm_attention is None:
        assert info.comm_attention is None
    else:
        torch.testing.assert_close(info.comm_attention, info_r.comm_attention, **tol)
    torch.testing.assert_close(gx, gx_r, **tol)
    for a, b in zip(gs, gs_r):
        torch.testing.assert_close(a, b, **tol)
    for name, g in gp_r.items():
        if g is None:
            assert gp[name] is None or not gp[name].any(), name
        else:
            torch.testing.assert_close(gp[name], g, msg=name, **tol)


def assert_cpp_equals_reference(core, T, B, resets):
    """Random float64 input and state for ``core``, episode starts at ``resets`` [(t, b)]: the kernel's
    outputs, info and gradients equal the reference's."""
    cfg = core.config
    x = torch.randn(T, B, core.input_size, dtype=torch.float64)
    starts = torch.zeros(T, B)
    for t, b in resets:
        starts[t, b] = 1
    state = tuple(torch.randn(B, cfg.num_units, cfg.unit_size, dtype=torch.float64) for _ in core.initial_state(B))
    assert_same(run(core, "cpp", x, starts, state), run(core, "reference", x, starts, state))


@needs_kernel
@pytest.mark.parametrize("fields", AXES, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_kernel_equals_reference_float64(fields):
    assert_cpp_equals_reference(make(**fields), 6, 3, [(2, 1), (4, 0)])  # resets mid-sequence


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [1, 8])
def test_kernel_equals_reference_float32_and_fused(cell, batch):
    core = make(dtype=torch.float32, cell=cell, k=2)
    x = torch.randn(9, batch, 7)
    starts = (torch.rand(9, batch) < 0.2).float()
    state = core.initial_state(batch)
    ref = run(core, "reference", x, starts, state)
    tol = dict(rtol=2e-5, atol=2e-5)
    assert_same(run(core, "cpp", x, starts, state), ref, **tol)
    assert_same(run(core, "fused", x, starts, state), ref, **tol)
    with torch.no_grad():  # rollouts: the kernel without an autograd node, bitwise the same forward
        core.backend = "cpp"
        out, final, info = core(x, state, starts)
    assert torch.equal(out, run(core, "cpp", x, starts, state)[0].detach())


@needs_kernel
def test_kernel_gradcheck_and_refuses_second_order():
    core = make(cell="lstm", k=2, block_inactive_grad=False)
    core.backend = "cpp"
    x = torch.randn(3, 2, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: core(inp)[0], (x,), eps=1e-6, atol=1e-5)
    out, _, _ = core(x)
    with pytest.raises(RuntimeError, match="second-order"):
        torch.autograd.grad(out.tanh().sum(), x, create_graph=True)


@needs_kernel
def test_auto_picks_the_kernel_where_it_covers_the_call():
    core = make(dtype=torch.float32, k=2)
    core(torch.randn(2, 3, 7))
    assert core.last_path == "cpp"
    rows = RIMs(7, RIMsConfig(num_units=4, k=2, unit_size=5, num_input_heads=2))
    rows(torch.randn(2, 3, 7))
    assert rows.last_path == "reference"
    rows.backend = "cpp"
    with pytest.raises(RuntimeError, match="one input row, one input head"):
        rows(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="backend='gpu' is invalid"):
        rows.backend = "gpu"


def test_without_a_compiler_the_pure_pytorch_path_runs(tmp_path):
    """No compiler (CXX names a missing program, empty cache): a warning, then the fused Python step."""
    code = ("import warnings, torch\n"
            "from rims_rl import RIMs, RIMsConfig, kernel\n"
            "core = RIMs(5, RIMsConfig(num_units=4, k=2, unit_size=3))\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    out, _, _ = core(torch.randn(3, 2, 5))\n"
            "out.sum().backward()\n"
            "print(core.last_path, kernel.available(), [str(w.message) for w in seen])\n")
    env = dict(os.environ, CXX=str(tmp_path / "no-such-c++"), RIMS_RL_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("fused False"), result.stdout
    assert "no C++ compiler found" in result.stdout
    assert not list((tmp_path / "cache").glob("*.so"))


@needs_kernel
def test_a_compiler_without_openmp_builds_the_kernel_with_chunks_in_turn(tmp_path):
    """A compiler that refuses -fopenmp: the kernel is built without it, and with 2 threads its batch
    chunks (run one after another) still give the reference's values and gradients."""
    compiler = tmp_path / "c++-without-openmp"
    compiler.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-fopenmp" ] && { echo "no OpenMP" >&2; exit 1; }; done\n'
                        'exec c++ "$@"\n')
    compiler.chmod(0o755)
    code = ("import torch\n"
            "from rims_rl import RIMs, RIMsConfig, kernel\n"
            "torch.manual_seed(0); torch.set_num_threads(2)\n"
            "core = RIMs(7, RIMsConfig(num_units=4, k=2, unit_size=5)).double()\n"
            "x = torch.randn(32, 10, 7, dtype=torch.float64, requires_grad=True)\n"
            "grads = []\n"
            "for backend in ('cpp', 'reference'):\n"
            "    core.backend = backend; x.grad = None\n"
            "    core(x)[0].square().sum().backward()\n"
            "    grads.append(x.grad.clone())\n"
            "print(kernel.available(), (grads[0] - grads[1]).abs().max().item())\n")
    env = dict(os.environ, CXX=str(compiler), RIMS_RL_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    available, diff = result.stdout.split()
    assert available == "True" and float(diff) < 1e-10, result.stdout
    assert len(list((tmp_path / "cache").glob("*.so"))) == 1


@needs_kernel
def test_rollout_weight_cache_follows_parameter_updates():
    """No-grad calls reuse the kernel's prepared weights until a parameter changes."""
    core = make(dtype=torch.float32, k=2)
    x = torch.randn(1, 2, 7)
    with torch.no_grad():
        first, _, _ = core(x)
        assert torch.equal(core(x)[0], first)
        core.cell.hidden_to_gates.weight.add_(0.5)  # in place, as an optimizer step
        changed, _, _ = core(x)
    core.backend = "reference"
    with torch.no_grad():
        expected, _, _ = core(x)
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(changed, expected)


def make_wide(dtype, cell):
    """Sizes whose per-step products use every part of the kernel's register tiles: blocks of 4 rows and
    single rows, 3-vector and 1-vector column tiles and a partial last vector."""
    torch.manual_seed(0)
    cfg = RIMsConfig(num_units=5, k=3, unit_size=21, cell=cell, input_key_size=7, input_value_size=19,
                     comm_key_size=9, comm_value_size=13, num_comm_heads=2)
    return RIMs(11, cfg).to(dtype)


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("path", ["tiles", "bmm"])
def test_kernel_products_equal_reference(cell, path, monkeypatch):
    if path == "bmm":  # every per-step product through at::bmm instead of the register tiles
        monkeypatch.setattr(kernel, "SMALL_PRODUCT", 0)
    assert_cpp_equals_reference(make_wide(torch.float64, cell), 5, 7, [(3, 2)])


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [10, 13])
def test_kernel_with_two_threads_runs_batch_chunks_side_by_side_exactly(cell, batch):
    """With 2 torch threads and >= 256 samples a sequence, the batch is cut into 2 chunks run in
    parallel: outputs, info and every gradient still equal the reference's (and 1 thread's)."""
    core = make_wide(torch.float64, cell)
    T = 32
    x = torch.randn(T, batch, 11, dtype=torch.float64)
    starts = (torch.rand(T, batch) < 0.1).double()
    state = tuple(torch.randn(batch, 5, 21, dtype=torch.float64) for _ in core.initial_state(batch))
    ref = run(core, "reference", x, starts, state)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        chunked = run(core, "cpp", x, starts, state)
    finally:
        torch.set_num_threads(threads)
    assert_same(chunked, ref)
    assert_same(run(core, "cpp", x, starts, state), chunked)
