"""Every RIMs backend against the reference step (rims_rl/reference.py), and the reference against the
paper's step written out RIM by RIM.

One helper, ``assert_matches_reference``, compares a backend with the reference on the same core and
inputs: outputs, final state, mask, both attentions, and the gradients of the input, the given state and
every parameter. The fused step and the compiled kernel are held to it for both cells, with and without
communication, several K and k, selections, resets mid-sequence, float32 and float64.
"""
import itertools
import math

import pytest
import torch

from rims_rl import RIMs, RIMsConfig, kernel

needs_kernel = pytest.mark.skipif(not kernel.available(), reason=f"compiled kernel unavailable: "
                                  f"{kernel.unavailable_reason()}")
D = 7


def make(dtype=torch.float64, seed=0, rows=None, fold=True, input_size=D, **fields):
    torch.manual_seed(seed)
    sizes = dict(num_units=4, k=2, unit_size=5, input_key_size=6, input_value_size=8, comm_key_size=3,
                 comm_value_size=4, num_comm_heads=2)
    cfg = RIMsConfig(**{**sizes, **fields})
    return RIMs(input_size, cfg, num_input_rows=rows, fold_single_row=fold).to(dtype)


def sequence(core, T, B, rows=None, resets=(), dtype=torch.float64, seed=1):
    """Random input [T, B, (R,) D], episode starts (1 at each (t, b) in resets) and a random given state."""
    g = torch.Generator().manual_seed(seed)
    shape = (T, B, core.input_size) if rows is None else (T, B, rows, core.input_size)
    x = torch.randn(*shape, generator=g, dtype=dtype)
    starts = torch.zeros(T, B)
    for t, b in resets:
        starts[t, b] = 1
    cfg = core.config
    state = tuple(torch.randn(B, cfg.num_units, cfg.unit_size, generator=g, dtype=dtype)
                  for _ in core.initial_state(B))
    return x, starts, state


def results(core, backend, x, starts, state):
    """Forward + backward of ``core`` run by ``backend``: (out, final, info, dx, dstate, {param: grad})."""
    core.backend = backend
    core.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    state = tuple(s.detach().clone().requires_grad_(True) for s in state)
    out, final, info = core(x, state, starts)
    (out.square().sum() + sum(f.sin().sum() for f in final)).backward()
    assert core.last_path == backend
    return out, final, info, x.grad, [s.grad for s in state], {n: p.grad for n, p in core.named_parameters()}


def assert_matches_reference(core, backend, x, starts, state, reference_core=None, exact_forward=False, **tol):
    """``core`` run by ``backend`` equals ``reference_core`` (default: ``core`` itself) run by the reference
    step: outputs, final state, info, and the gradients of x, the given state and every parameter.
    ``exact_forward``: the forward values bit for bit (the backend runs the reference's ops)."""
    ref_core = core if reference_core is None else reference_core
    out, final, info, gx, gs, gp = results(core, backend, x, starts, state)
    out_r, final_r, info_r, gx_r, gs_r, gp_r = results(ref_core, "reference", x, starts, state)
    same = torch.testing.assert_close if not exact_forward else (lambda a, b, **_: torch.equal(a, b) or
                                                                 pytest.fail(f"not bitwise equal: {a} {b}"))
    same(out, out_r, **tol)
    for a, b in zip(final, final_r, strict=True):
        same(a, b, **tol)
    assert torch.equal(info.mask, info_r.mask)
    same(info.input_attention, info_r.input_attention, **tol)
    if info_r.comm_attention is None:
        assert info.comm_attention is None
    else:
        same(info.comm_attention, info_r.comm_attention, **tol)
    torch.testing.assert_close(gx, gx_r, **tol)
    for a, b in zip(gs, gs_r, strict=True):
        torch.testing.assert_close(a, b, **tol)
    assert set(gp) == set(gp_r)
    for name, g in gp_r.items():
        if g is None:
            assert gp[name] is None or not gp[name].any(), name
        else:
            torch.testing.assert_close(gp[name], g, msg=name, **tol)


# ----------------------------------------------------------------------------------- fused step
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("block", [True, False])
@pytest.mark.parametrize("units, k", [(5, 3), (4, 1), (6, 5)])
def test_fused_equals_reference(cell, block, units, k):
    """The fused step runs the reference's forward ops (bitwise equal) and its hand-written backward
    gives the reference's gradients."""
    core = make(torch.float32, num_units=units, k=k, cell=cell, block_inactive_grad=block)
    x, starts, state = sequence(core, 7, 3, resets=[(3, 1), (5, 0)], dtype=torch.float32)
    assert_matches_reference(core, "fused", x, starts, state, exact_forward=True, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_without_gradients_equals_reference(cell):
    """Rollouts (torch.no_grad) run the fused forward ops without an autograd node: the same values."""
    core = make(torch.float32, cell=cell, num_units=5, k=3)
    x, starts, state = sequence(core, 7, 3, resets=[(3, 1)], dtype=torch.float32)
    outputs = {}
    with torch.no_grad():
        for backend in ("fused", "reference"):
            core.backend = backend
            outputs[backend] = core(x, state, starts)
            assert core.last_path == backend
    (out_f, final_f, info_f), (out_r, final_r, info_r) = outputs["fused"], outputs["reference"]
    assert torch.equal(out_f, out_r)
    assert all(torch.equal(a, b) for a, b in zip(final_f, final_r))
    assert torch.equal(info_f.mask, info_r.mask)
    assert torch.equal(info_f.comm_attention, info_r.comm_attention)


@pytest.mark.parametrize("fields", [dict(communication=False), dict(k=4), dict(selection="across"),
                                    dict(num_input_heads=2), dict(comm_inactive="kept")],
                         ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_fused_leaves_what_it_does_not_cover_to_the_reference(fields):
    core = make(torch.float32, **fields)
    core.backend = "fused"
    core(torch.randn(3, 2, D))
    assert core.last_path == "reference"


# ------------------------------------------------------------------------------ compiled kernel
AXES = [dict(cell=c, k=k, communication=comm, selection=sel, across_renormalise=ren, comm_inactive=src,
             block_inactive_grad=block)
        for c, k, comm, (sel, ren), src, block in itertools.product(
            ["lstm", "gru"], [2, 4], [True, False], [("null", True), ("across", True), ("across", False)],
            ["tentative", "kept"], [True, False])]


@needs_kernel
@pytest.mark.parametrize("fields", AXES, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_kernel_equals_reference_on_every_axis(fields):
    core = make(**fields)
    assert_matches_reference(core, "cpp", *sequence(core, 6, 3, resets=[(2, 1), (4, 0)]))


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("communication", [True, False])
@pytest.mark.parametrize("units, k", [(1, 1), (3, 1), (6, 4), (7, 6)])
def test_kernel_equals_reference_for_other_unit_counts(cell, communication, units, k):
    core = make(num_units=units, k=k, cell=cell, communication=communication)
    assert_matches_reference(core, "cpp", *sequence(core, 5, 4, resets=[(0, 2), (3, 1)]))


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [1, 8])
def test_kernel_and_fused_equal_reference_in_float32(cell, batch):
    core = make(torch.float32, cell=cell, k=2)
    x = torch.randn(9, batch, D)
    starts = (torch.rand(9, batch) < 0.2).float()
    state = core.initial_state(batch)
    tol = dict(rtol=2e-5, atol=2e-5)
    assert_matches_reference(core, "cpp", x, starts, state, **tol)
    assert_matches_reference(core, "fused", x, starts, state, **tol)
    with torch.no_grad():  # rollouts: the kernel without an autograd node, bitwise the same forward
        core.backend = "cpp"
        out, _, _ = core(x, state, starts)
    assert torch.equal(out, results(core, "cpp", x, starts, state)[0].detach())


def make_wide(dtype, cell):
    """Sizes whose per-step products use every part of the kernel's register tiles: blocks of 4 rows and
    single rows, 3-vector and 1-vector column tiles and a partial last vector."""
    return make(dtype, num_units=5, k=3, unit_size=21, cell=cell, input_key_size=7, input_value_size=19,
                comm_key_size=9, comm_value_size=13, num_comm_heads=2, input_size=11)


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("path", ["tiles", "bmm"])
def test_kernel_products_equal_reference(cell, path, monkeypatch):
    if path == "bmm":  # every per-step product through at::bmm instead of the register tiles
        monkeypatch.setattr(kernel, "SMALL_PRODUCT", 0)
    core = make_wide(torch.float64, cell)
    assert_matches_reference(core, "cpp", *sequence(core, 5, 7, resets=[(3, 2)]))


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [10, 13])
def test_kernel_with_two_threads_runs_batch_chunks_side_by_side_exactly(cell, batch):
    """With 2 torch threads and >= 256 samples a sequence, the batch is cut into 2 chunks run in
    parallel: outputs, info and every gradient still equal the reference's."""
    core = make_wide(torch.float64, cell)
    x, _, state = sequence(core, 32, batch)
    starts = (torch.rand(32, batch) < 0.1).double()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert_matches_reference(core, "cpp", x, starts, state)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------- the reference's own speed path
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("selection", ["null", "across"])
@pytest.mark.parametrize("heads", [1, 2])
def test_folded_single_row_equals_the_plain_read(cell, selection, heads):
    """``fold_single_row=True`` (value-to-gate products before the loop) gives the values and gradients
    of reading first and applying the input weights in each step."""
    folded = make(cell=cell, selection=selection, num_input_heads=heads)
    plain = make(cell=cell, selection=selection, num_input_heads=heads, fold=False)
    plain.load_state_dict(folded.state_dict())
    x, starts, state = sequence(folded, 6, 3, resets=[(2, 0), (4, 2)])
    assert_matches_reference(folded, "reference", x, starts, state, reference_core=plain)


@pytest.mark.parametrize("backend", ["auto", "fused"])
def test_several_input_rows_run_the_reference(backend):
    """R > 1 rows: no fast backend covers them; "auto" and "fused" run the reference, "cpp" refuses."""
    core = make(rows=3)
    x, starts, state = sequence(core, 4, 2, rows=3, resets=[(2, 1)])
    core.backend = backend
    core(x, state, starts)
    assert core.last_path == "reference"
    core.backend = "cpp"
    with pytest.raises(RuntimeError, match="one input row"):
        core(x, state, starts)


# ------------------------------------------------- the reference against the paper, RIM by RIM
def paper_step(core, h, c, rows, init, start):
    """One step as the paper writes it (§2.2-2.4), one RIM at a time, tensors [B, ...]. h, c [B, K, H]
    (c None for gru); rows [B, R, D]; start [B] bool. Returns (h, c, mask [B, K], attention on
    [null, rows] [B, K, R+1], comm attention [B, heads, K, K] or None)."""
    cfg, cell, attn, comm = core.config, core.cell, core.input_attention, core.communication
    B, K, H = h.shape
    if start.any():  # episode start: the initial state
        h = torch.where(start[:, None, None], init[0], h)
        c = None if c is None else torch.where(start[:, None, None], init[1], c)
    heads = cfg.num_input_heads
    if attn is None:
        reads = [rows.reshape(B, -1)] * K
        mask = torch.ones(B, K, dtype=torch.bool)
        attention = None
    else:
        # (2) keys and values of [null row, rows]; the null row is all zeros
        X = torch.cat([torch.zeros_like(rows[:, :1]), rows + core.row_embedding], dim=1)  # [B, R+1, D]
        kv = (X @ attn.key_value.weight.T).view(B, X.shape[1], heads, -1)
        keys, values = kv.split([attn.key_size, attn.value_size], dim=-1)
        scores = torch.stack([torch.einsum("bhd,brhd->bhr", (h[:, k] @ attn.query.weight[k]).view(B, heads, -1),
                                           keys) / math.sqrt(attn.key_size) for k in range(K)], 1)  # [B,K,h,R+1]
        if cfg.selection == "null":
            probs = torch.softmax(scores, dim=-1)
            activity = 1 - probs[..., 0].mean(-1)  # [B, K]
        else:  # no null row: softmax across RIMs for every row
            probs = torch.cat([torch.zeros_like(scores[..., :1]), torch.softmax(scores[..., 1:], dim=1)], -1)
            activity = probs.sum((-1, -2))
        order = torch.sort(activity, dim=1, descending=True, stable=True).indices[:, :cfg.k]
        mask = torch.zeros(B, K, dtype=torch.bool).scatter_(1, order, True)
        attention = probs.mean(2)
        if cfg.selection == "across":
            m = mask[:, :, None, None]
            if cfg.across_renormalise:
                read_probs = torch.softmax(scores[..., 1:].masked_fill(~m, float("-inf")), dim=1)
            else:
                read_probs = probs[..., 1:] * m
            read_probs = torch.cat([torch.zeros_like(scores[..., :1]), read_probs], -1)
        else:
            read_probs = probs
        reads = [torch.einsum("bhr,brhd->bhd", read_probs[:, k], values).reshape(B, -1) for k in range(K)]
    # (3) each RIM's own cell
    h_new, c_new = [], []
    for k in range(K):
        gx = reads[k] @ cell.input_to_gates.weight[k] + cell.input_to_gates.bias[k, 0]
        gh = h[:, k] @ cell.hidden_to_gates.weight[k] + cell.hidden_to_gates.bias[k, 0]
        if c is not None:  # gate columns [input, forget, output, candidate]
            i, f, o, g = (gx + gh).split(H, dim=-1)
            ck = torch.sigmoid(f) * c[:, k] + torch.sigmoid(i) * torch.tanh(g)
            h_new.append(torch.sigmoid(o) * torch.tanh(ck))
            c_new.append(ck)
        else:  # torch.nn.GRUCell
            r = torch.sigmoid(gx[:, :H] + gh[:, :H])
            z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
            h_new.append((1 - z) * n + z * h[:, k])
    h_new = torch.stack(h_new, 1)
    active = mask[:, :, None]
    if cfg.block_inactive_grad and cfg.k < K:
        h_new = torch.where(active, h_new, h_new.detach())
    comm_attention = None
    if comm is not None:
        # (4) every RIM reads from all RIMs' tentative states (or the kept ones of inactive RIMs)
        source = torch.where(active, h_new, h) if cfg.comm_inactive == "kept" else h_new
        ch, ck, cv = comm.num_heads, comm.key_size, comm.value_size
        qkv = torch.stack([source[:, k] @ comm.query_key_value.weight[k] for k in range(K)], 1).view(B, K, ch, -1)
        q, key, v = qkv.split([ck, ck, cv], dim=-1)
        comm_attention = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, key) / math.sqrt(ck), dim=-1)
        read = torch.einsum("bhqk,bkhd->bqhd", comm_attention, v).reshape(B, K, -1)
        out = []
        for k in range(K):
            gate, update = (read[:, k] @ comm.output_gate.weight[k] + comm.output_gate.bias[k, 0]).split(H, -1)
            out.append(h_new[:, k] + torch.sigmoid(gate) * torch.tanh(update))
        h_new = torch.stack(out, 1)
        comm_attention = comm_attention * mask[:, None, :, None]
    # (3) inactive RIMs keep their state
    h_out = torch.where(active, h_new, h)
    c_out = None if c is None else torch.where(active, torch.stack(c_new, 1), c)
    return h_out, c_out, mask, attention, comm_attention


PAPER_CASES = [dict(cell=c, selection=s, num_input_heads=heads, communication=comm, k=k, comm_inactive=src)
               for c, s, heads, comm, k, src in itertools.product(
                   ["lstm", "gru"], ["null", "across"], [1, 2], [True, False], [2, 4], ["tentative", "kept"])
               if comm or src == "tentative"]


@pytest.mark.parametrize("rows", [None, 3])
@pytest.mark.parametrize("fields", PAPER_CASES, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_reference_equals_the_paper_step_rim_by_rim(fields, rows):
    """The reference backend (batched, unit-major, log-domain ranking, folded single row) computes the
    paper's step written out RIM by RIM: outputs, final state, mask, attentions and gradients."""
    core = make(rows=rows, **fields)
    T, B = 5, 3
    x, starts, state = sequence(core, T, B, rows=rows, resets=[(2, 1), (3, 0)])
    out, final, info, dx, _, ours = results(core, "reference", x, starts, state)
    ours = {n: g.clone() for n, g in ours.items()}
    core.zero_grad(set_to_none=True)
    xr = x.clone().requires_grad_(True)
    rows_x = xr if rows is not None else xr.unsqueeze(2)
    h, c = state[0], (state[1] if len(state) > 1 else None)
    init = core.initial_state(B)
    outs, masks, attentions, comms = [], [], [], []
    for t in range(T):
        h, c, mask, attention, comm_attention = paper_step(core, h, c, rows_x[t], init, starts[t] != 0)
        outs.append(h.reshape(B, -1))
        masks.append(mask)
        attentions.append(attention)
        comms.append(comm_attention)
    paper_out = torch.stack(outs)
    paper_final = (h,) + ((c,) if c is not None else ())
    (paper_out.square().sum() + sum(f.sin().sum() for f in paper_final)).backward()
    torch.testing.assert_close(out, paper_out)
    for a, b in zip(final, paper_final, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(info.mask, torch.stack(masks))
    torch.testing.assert_close(info.input_attention, torch.stack(attentions))
    if fields["communication"]:
        torch.testing.assert_close(info.comm_attention, torch.stack(comms))
    torch.testing.assert_close(dx, xr.grad)
    for name, p in core.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, msg=name)
