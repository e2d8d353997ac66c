"""Paper-fidelity options: renormalised top-k attention for selection="across", communication keys and
values of inactive RIMs from their kept state, several input heads."""
import pytest
import torch

from rims_rl import RIMs, RIMsConfig
from rims_rl.attention import InputAttention

D, K, KA, H = 7, 5, 3, 6


def make(seed=0, **kwargs):
    torch.manual_seed(seed)
    fields = dict(num_units=K, k=KA, unit_size=H, input_key_size=8, input_value_size=9, comm_key_size=4,
                  comm_value_size=5, num_comm_heads=2)
    fields.update(kwargs)
    return RIMs(D, RIMsConfig(**fields))


def test_defaults_and_validation():
    cfg = RIMsConfig()
    assert cfg.across_renormalise is True and cfg.comm_inactive == "tentative" and cfg.num_input_heads == 1
    with pytest.raises(ValueError, match=r"comm_inactive='paper'.*tentative, kept"):
        RIMsConfig(comm_inactive="paper")
    with pytest.raises(ValueError, match=r"across_renormalise=1 "):
        RIMsConfig(across_renormalise=1)


def test_across_renormalised_attention_is_a_softmax_over_the_active_rims():
    torch.manual_seed(0)
    attn = InputAttention(6, 4, 5, 8, 3, 2, "across", dropout=0.0)
    scores = 3 * torch.randn(4, 2, 2, 3)  # [K, B, heads, R]
    mask = torch.tensor([[True, False], [False, True], [True, True], [False, False]])
    p = attn.masked_probabilities(scores, mask, renormalise=True)
    assert (p[~mask] == 0).all()
    torch.testing.assert_close(p.sum(0), torch.ones(2, 2, 3))  # every row's attention sums to 1 over active RIMs
    for b in range(2):
        active = mask[:, b]
        torch.testing.assert_close(p[active, b], torch.softmax(scores[active, b], dim=0))
    raw = attn.masked_probabilities(scores, mask, renormalise=False)
    torch.testing.assert_close(raw, torch.softmax(scores, dim=0) * mask[..., None, None])


@pytest.mark.parametrize("rows", [None, 3])
def test_across_renormalise_changes_the_reads_of_active_rims_only(rows):
    x = torch.randn(4, 2, D) if rows is None else torch.randn(4, 2, rows, D)
    results = {}
    for renormalise in (True, False):
        core = make(selection="across", across_renormalise=renormalise, communication=False)
        core.zero_grad()
        out, state, info = core(x)
        out.square().sum().backward()
        results[renormalise] = out, info, core.input_attention.query.weight.grad.clone()
    (out_r, info_r, grad_r), (out_n, info_n, _) = results[True], results[False]
    assert out_r.shape == (4, 2, K * H) and torch.isfinite(out_r).all()
    first = info_r.mask[0]
    assert torch.equal(first, info_n.mask[0])  # same selection at the first step
    step0_r, step0_n = out_r[0].view(2, K, H), out_n[0].view(2, K, H)
    assert torch.equal(step0_r[~first], step0_n[~first])  # inactive RIMs keep their (initial) state
    assert not torch.allclose(step0_r[first], step0_n[first])  # active RIMs read with other weights
    assert grad_r.abs().sum() > 0


def test_comm_inactive_kept_uses_the_kept_state_of_inactive_rims():
    """Perturbing an inactive RIM's input weights changes its tentative update only: with "kept" the
    active RIMs' first step does not see it, with "tentative" (authors' code) it does."""
    x = torch.randn(1, 2, D)
    for source, expect_same in (("kept", True), ("tentative", False)):
        core = make(comm_inactive=source)
        with torch.no_grad():
            out, _, info = core(x)
        mask = info.mask[0]  # [B, K]
        inactive = int((~mask[0]).nonzero()[0])
        with torch.no_grad():
            core.cell.input_to_gates.weight[inactive] += 1.0
            core.cell.input_to_gates.bias[inactive] += 1.0
            out2, _, info2 = core(x)
        assert torch.equal(info2.mask, info.mask)
        active0 = out[0, 0].view(K, H)[mask[0]]
        active0_2 = out2[0, 0].view(K, H)[mask[0]]
        assert torch.equal(active0, active0_2) == expect_same, source


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_comm_inactive_kept_gradient_reaches_the_kept_state(cell):
    """With "kept", the active RIMs' updates depend on the inactive RIMs' previous state through the
    communication keys/values; with "tentative" and block_inactive_grad they do not."""
    grads = {}
    for source in ("kept", "tentative"):
        core = make(cell=cell, comm_inactive=source, learned_initial_state=False)
        x = torch.randn(1, 2, D)
        state = tuple(torch.randn(2, K, H, requires_grad=True) for _ in core.initial_state(2))
        out, _, info = core(x, state)
        mask = info.mask[0]
        (out.view(2, K, H)[mask]).sum().backward()  # only the active RIMs' outputs
        grads[source] = state[0].grad[~mask]
    assert grads["kept"].abs().sum() > 0
    if cell == "gru":  # lstm: the inactive h still reaches the active RIMs only through comm keys (tentative: blocked)
        assert torch.equal(grads["tentative"], torch.zeros_like(grads["tentative"]))


@pytest.mark.parametrize("selection", ["null", "across"])
@pytest.mark.parametrize("rows", [None, 3])
def test_four_input_heads(selection, rows):
    """Table 3's 4 input heads: shapes, selection follows the attention averaged over heads, gradients."""
    core = make(num_input_heads=4, selection=selection)
    assert core.input_attention.key_value.out_features == 4 * (8 + 9)
    x = torch.randn(5, 2, D, requires_grad=True) if rows is None else torch.randn(5, 2, rows, D, requires_grad=True)
    out, _, info = core(x, None, torch.zeros(5, 2))
    R = rows or 1
    assert out.shape == (5, 2, K * H) and info.input_attention.shape == (5, 2, K, R + 1)
    assert (info.mask.sum(-1) == KA).all()
    on_rows = info.input_attention[..., 1:].sum(-1)
    lowest_active = on_rows.masked_fill(~info.mask, float("inf")).min(-1).values
    highest_inactive = on_rows.masked_fill(info.mask, float("-inf")).max(-1).values
    assert (lowest_active >= highest_inactive - 1e-6).all()
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0
    w = core.input_attention.key_value.weight.grad.view(4, 8 + 9, D)
    assert all(w[head].abs().sum() > 0 for head in range(4))  # every head's keys and values are trained
