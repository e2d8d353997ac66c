"""The core adapter: one call for all cores, resets inside sequences, bad names."""
import pytest
import torch

from agents.cores import CORES, make_core

TINY_RIMS = dict(num_units=4, k=2, unit_size=8, input_key_size=8, comm_key_size=8, comm_value_size=8, num_comm_heads=2)


def kwargs_for(core):
    return {"rims": TINY_RIMS, "lstm": {"hidden_size": 12}, "gru": {"hidden_size": 12}, "none": None}[core]


def step_by_step(core, x, state, starts):
    outs = []
    for t in range(x.shape[0]):
        out, state, _ = core(x[t : t + 1], state, starts[t : t + 1])
        outs.append(out)
    return torch.cat(outs), state


@pytest.mark.parametrize("name", CORES)
def test_sequence_call_equals_step_by_step_with_resets(name):
    torch.manual_seed(0)
    core = make_core(name, 6, kwargs_for(name))
    T, B = 17, 5
    x = torch.randn(T, B, 6, requires_grad=True)
    starts = (torch.rand(T, B) < 0.2).float()
    starts[0, 1] = 1.0
    starts[:, 3] = 0.0  # one env without any reset
    state = tuple(torch.randn_like(s) for s in core.initial_state(B))
    out, final, _ = core(x, state, starts)
    ref_out, ref_final = step_by_step(core, x, state, starts)
    assert out.shape == (T, B, core.output_size)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    grad = torch.autograd.grad(out.square().sum(), x)[0]
    ref_grad = torch.autograd.grad(ref_out.square().sum(), x)[0]
    torch.testing.assert_close(grad, ref_grad, atol=1e-4, rtol=1e-4)
    # need_state=False (PPO updates) may take the zero-padded layout: same outputs and gradients
    fast_out, _, _ = core(x, state, starts, need_state=False)
    torch.testing.assert_close(fast_out, ref_out, atol=1e-5, rtol=1e-5)
    fast_grad = torch.autograd.grad(fast_out.square().sum(), x)[0]
    torch.testing.assert_close(fast_grad, ref_grad, atol=1e-4, rtol=1e-4)


def test_padded_layout_is_used_when_cheap():
    torch.manual_seed(0)
    core = make_core("lstm", 3, {"hidden_size": 4})
    x = torch.randn(8, 2, 3)
    starts = torch.zeros(8, 2)
    starts[5, 0] = 1.0  # segments of 5, 3 and 8 steps: padded work 3 * 8 <= 3.5 * 16
    state = core.initial_state(2)
    out_packed, final, _ = core(x, state, starts)
    out_padded, no_state, _ = core(x, state, starts, need_state=False)
    assert no_state == () and len(final) == 2
    torch.testing.assert_close(out_padded, out_packed)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_reset_forgets_the_past(name):
    torch.manual_seed(0)
    core = make_core(name, 3, {"hidden_size": 4})
    x = torch.randn(6, 2, 3)
    starts = torch.zeros(6, 2)
    starts[3] = 1.0
    x_other = x.clone()
    x_other[:3] = torch.randn(3, 2, 3)  # different past before the reset
    state = core.initial_state(2)
    out, _, _ = core(x, state, starts)
    out_other, _, _ = core(x_other, state, starts)
    torch.testing.assert_close(out[3:], out_other[3:])
    assert not torch.allclose(out[:3], out_other[:3])


def test_bad_core_name_lists_valid_cores():
    with pytest.raises(ValueError) as err:
        make_core("transformer", 4)
    message = str(err.value)
    assert "\n" not in message and "'transformer'" in message
    for name in CORES:
        assert name in message


def test_bad_core_kwargs_are_rejected():
    with pytest.raises(ValueError, match="hidden_sizes"):
        make_core("lstm", 4, {"hidden_sizes": 3})
    with pytest.raises(ValueError, match="num_unit"):
        make_core("rims", 4, {"num_unit": 3})
    with pytest.raises(ValueError, match="k="):
        make_core("rims", 4, {"num_units": 2, "k": 3})
