"""Core hardening: exact weight gradients whatever the order of backward calls, second-order
gradients exact or refused, resets that clear non-finite states, top-k on scores with index ties."""
import pytest
import torch

from rims_rl import RIMs, RIMsConfig

D = 6


def make(cell="lstm", seed=0, dtype=torch.float32, **kwargs):
    torch.manual_seed(seed)
    fields = dict(num_units=4, k=2, unit_size=5, cell=cell, input_key_size=4, input_value_size=6,
                  comm_key_size=3, comm_value_size=4, num_comm_heads=2)
    fields.update(kwargs)
    return RIMs(D, RIMsConfig(**fields)).to(dtype)


def weight_grads(core, loss_fn):
    core.zero_grad(set_to_none=True)
    loss_fn().backward()
    return {n: p.grad.clone() for n, p in core.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_weight_gradients_exact_after_an_input_only_backward(cell, backend):
    """autograd.grad on the input (retain_graph) and then loss.backward() must not count weight
    gradients twice (the deferred store kept the first pass's entries)."""
    core = make(cell)
    core.backend = backend
    x = torch.randn(5, 3, D, requires_grad=True)

    def loss():
        out, _, _ = core(x)
        return out.square().sum()

    expected = weight_grads(core, loss)
    core.zero_grad(set_to_none=True)
    value = loss()
    (gx,) = torch.autograd.grad(value, x, retain_graph=True)
    assert gx.abs().sum() > 0
    value.backward()
    assert set(expected) == {n for n, p in core.named_parameters() if p.grad is not None}
    for name, g in expected.items():
        torch.testing.assert_close(dict(core.named_parameters())[name].grad, g, msg=name)


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_two_backward_passes_accumulate_exactly_twice(backend):
    core = make("lstm")
    core.backend = backend
    x = torch.randn(4, 2, D)
    expected = weight_grads(core, lambda: core(x)[0].sum())
    core.zero_grad(set_to_none=True)
    value = core(x)[0].sum()
    value.backward(retain_graph=True)
    value.backward()
    for name, p in core.named_parameters():
        torch.testing.assert_close(p.grad, 2 * expected[name], msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_second_order_gradients_are_exact_or_refused(cell):
    """d/dx ||dL/dx||^2 (float64) of the fast paths equals the reference path's, or they raise."""
    core = make(cell, dtype=torch.float64)
    x0 = torch.randn(4, 2, D, dtype=torch.float64)

    def second_order():
        x = x0.clone().requires_grad_(True)
        out, _, _ = core(x)
        (gx,) = torch.autograd.grad(out.tanh().sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.square().sum(), x)
        return ggx

    core.backend = "reference"
    reference = second_order()
    for backend in ("fused", "auto"):
        core.backend = backend
        try:
            result = second_order()
        except RuntimeError as error:
            assert "second-order" in str(error) or "differentiate twice" in str(error)
        else:
            torch.testing.assert_close(result, reference)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_reset_gives_the_initial_state_whatever_the_old_state_held(cell, bad):
    core = make(cell)
    x = torch.randn(3, 2, D)
    state = tuple(torch.full_like(s, bad) for s in core.initial_state(2))
    starts = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    with torch.no_grad():
        out, final, _ = core(x, state, starts)
        fresh, fresh_final, _ = core(x)
    assert torch.equal(out, fresh)
    assert all(torch.equal(a, b) for a, b in zip(final, fresh_final))
    # with gradients: finite, and no gradient into the discarded state
    state = tuple(s.clone().requires_grad_(True) for s in state)
    out, _, _ = core(x, state, starts)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.equal(s.grad, torch.zeros_like(s)) for s in state)


def _saturated_core(cell="gru", k=2):
    """A core whose queries for every RIM give scores far above 17 (float32 sigmoid saturates to 1.0)."""
    core = make(cell, k=k)
    with torch.no_grad():
        core.input_attention.query.weight.zero_()
        core.input_attention.key_value.weight.zero_()
        core.row_embedding.zero_()
        for s in core.initial_states:
            s.fill_(1.0)
    return core


def _set_scores(core, per_unit):
    """Make the step-0 score of RIM i equal per_unit[i] for any input (state at init is all ones)."""
    attn = core.input_attention
    H, dk = core.config.unit_size, attn.key_size
    with torch.no_grad():
        attn.query.weight.zero_()
        attn.key_value.weight.zero_()
        core.row_embedding.zero_()
        core.row_embedding[0, 0] = 1.0
        attn.key_value.weight[0, 0] = dk ** 0.5  # key[0] = 1 after the 1/sqrt(key) scale
        for i, score in enumerate(per_unit):
            attn.query.weight[i, :, 0] = score / H  # query[0] = score (state entries are 1)


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_topk_ranks_scores_not_saturated_probabilities(backend):
    core = _saturated_core()
    core.backend = backend
    x = torch.zeros(1, 3, D)
    _set_scores(core, [20.0, 30.0, 25.0, 40.0])  # sigmoid of all four is exactly 1.0 in float32
    assert torch.equal(torch.sigmoid(torch.tensor([20.0, 30.0, 25.0, 40.0])), torch.ones(4))
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            _, _, info = core(x)
        assert info.mask[0].tolist() == [[False, True, False, True]] * 3


@pytest.mark.parametrize("backend", ["fused", "reference"])
@pytest.mark.parametrize("selection", ["null", "across"])
def test_topk_ties_are_broken_by_rim_index(backend, selection):
    core = _saturated_core(k=2)
    core.config = RIMsConfig(**{**core.config.to_dict(), "selection": selection})
    core.input_attention.selection = selection
    core.backend = backend
    _set_scores(core, [3.0, 5.0, 5.0, 5.0])  # RIMs 1, 2, 3 tie: the two lowest indices win
    _, _, info = core(torch.zeros(1, 2, D))
    assert info.mask[0].tolist() == [[False, True, True, False]] * 2
    _set_scores(core, [7.0, 7.0, 7.0, 7.0])
    _, _, info = core(torch.zeros(1, 2, D))
    assert info.mask[0].tolist() == [[True, True, False, False]] * 2


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reference_path_second_order_gradients_match_finite_differences(cell):
    # block_inactive_grad=False: the blocked gradient is by design not the true derivative
    core = make(cell, dtype=torch.float64, block_inactive_grad=False)
    core.backend = "reference"
    x = torch.randn(2, 1, D, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda inp: core(inp)[0].tanh(), (x,), eps=1e-6, atol=1e-5)
