"""The fused step (rims_rl.fused, one autograd node per step) equals the op-by-op step."""
import pytest
import torch

from rims_rl import RIMs, RIMsConfig


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("block", [True, False])
def test_fused_step_equals_unfused(cell, block):
    torch.manual_seed(0)
    core = RIMs(12, RIMsConfig(num_units=5, k=3, unit_size=8, cell=cell, input_key_size=6,
                               comm_key_size=4, comm_value_size=5, num_comm_heads=2, block_inactive_grad=block))
    x = torch.randn(7, 3, 12, requires_grad=True)
    starts = torch.zeros(7, 3)
    starts[3, 1] = 1
    results = []
    for fused in (True, False):
        core.backend = "fused" if fused else "reference"
        core.zero_grad(set_to_none=True)
        x.grad = None
        out, final, info = core(x, None, starts)
        (out.square().sum() + final[-1].sum()).backward()
        results.append((out, final, info, x.grad.clone(), {n: p.grad.clone() for n, p in core.named_parameters()}))
    (out_f, final_f, info_f, gx_f, gp_f), (out_u, final_u, info_u, gx_u, gp_u) = results
    assert torch.equal(out_f, out_u)
    assert all(torch.equal(a, b) for a, b in zip(final_f, final_u))
    assert torch.equal(info_f.mask, info_u.mask)
    assert torch.equal(info_f.input_attention, info_u.input_attention)
    assert torch.equal(info_f.comm_attention, info_u.comm_attention)
    torch.testing.assert_close(gx_f, gx_u, rtol=1e-5, atol=1e-6)
    for name in gp_u:
        torch.testing.assert_close(gp_f[name], gp_u[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_forward_without_gradients_equals_unfused(cell):
    """Rollouts (torch.no_grad) run the fused forward ops without an autograd node: same results."""
    torch.manual_seed(0)
    core = RIMs(12, RIMsConfig(num_units=5, k=3, unit_size=8, cell=cell, input_key_size=6,
                               comm_key_size=4, comm_value_size=5, num_comm_heads=2))
    x = torch.randn(7, 3, 12)
    starts = torch.zeros(7, 3)
    starts[3, 1] = 1
    seen = []
    original = core._step
    core._step = lambda *args: seen.append(args[-1]) or original(*args)
    results = []
    with torch.no_grad():
        for fused in (True, False):
            core.backend = "fused" if fused else "reference"
            results.append(core(x, None, starts))
    assert seen == [True] * 7 + [False] * 7  # the fused path really ran without gradients
    (out_f, final_f, info_f), (out_u, final_u, info_u) = results
    assert torch.equal(out_f, out_u)
    assert all(torch.equal(a, b) for a, b in zip(final_f, final_u))
    assert torch.equal(info_f.mask, info_u.mask)
    assert torch.equal(info_f.comm_attention, info_u.comm_attention)
