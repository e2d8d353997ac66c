"""The compiled sequence kernel (rims_rl.kernel, backend "cpp") outside its arithmetic (which
tests/test_core_backends.py holds to the reference): gradients, its options, when it runs, and the
fall-back to pure PyTorch when no compiler is present."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rims_rl import RIMs, RIMsConfig, kernel

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(not kernel.available(), reason=f"compiled kernel unavailable: "
                                  f"{kernel.unavailable_reason()}")


def make(dtype=torch.float64, **fields):
    torch.manual_seed(0)
    cfg = RIMsConfig(num_units=4, unit_size=5, input_key_size=6, input_value_size=8, comm_key_size=3,
                     comm_value_size=4, num_comm_heads=2, **fields)
    return RIMs(7, cfg).to(dtype)


def test_kernel_config_fields_are_the_sources_in_order():
    """The ops take KernelConfig as a list of ints: its fields are the C++ source's RIMS_CONFIG_FIELDS,
    in order (read from the source, so this holds without a compiler too)."""
    source = (ROOT / "rims_rl" / "csrc" / "sequence.cpp").read_text()
    block = re.search(r"#define RIMS_CONFIG_FIELDS\(X\)(.*?)\n#define", source, re.S).group(1)
    assert tuple(re.findall(r'X\(\w+, "(\w+)"\)', block)) == kernel.KernelConfig._fields


@needs_kernel
def test_the_loaded_kernel_reports_kernel_configs_fields():
    assert tuple(torch.ops.rims_rl_cpp.config_fields()) == kernel.KernelConfig._fields


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
