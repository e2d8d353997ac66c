"""rims_rl.matmul: the sequence-level products through oneDNN equal torch's products (values and
gradients), whatever the operands' strides, and fall back to torch when oneDNN is off."""
import pytest
import torch
import torch.nn.functional as F

from rims_rl import RIMs, RIMsConfig, kernel, matmul


def _grads(fn, x, w, b):
    x, w = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    b = None if b is None else b.detach().clone().requires_grad_(True)
    out = fn(x, w, b)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out, x.grad, w.grad, None if b is None else b.grad


@pytest.mark.skipif(not matmul.onednn_available(), reason="oneDNN's linear op is not in this torch")
@pytest.mark.parametrize("layout", ["contiguous", "column-sliced", "transposed"])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_equals_torch_for_every_layout(layout, bias):
    torch.manual_seed(0)
    base = torch.randn(3, 96, 70)
    x = {"contiguous": base[..., :64].contiguous(), "column-sliced": base[..., 3:67],  # strides (.., 70, 1)
         "transposed": torch.randn(3, 64, 96).transpose(1, 2)}[layout]
    w = torch.randn(300, 64) if layout != "transposed" else torch.randn(64, 300).t()
    b = torch.randn(300) if bias else None
    assert x.shape == (3, 96, 64) and 3 * 96 * 64 * 300 >= matmul.MIN_ONEDNN_PRODUCT
    ours = _grads(matmul.linear, x, w, b)
    ref = _grads(F.linear, x, w, b)
    for a, r in zip(ours, ref):
        if r is not None:
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_matmul_falls_back_to_torch(monkeypatch):
    torch.manual_seed(0)
    a, b = torch.randn(40, 30, dtype=torch.float64), torch.randn(30, 20, dtype=torch.float64)
    assert not matmul.uses_onednn(a)  # float64: torch's product, exactly
    assert torch.equal(matmul.matmul(a, b), a @ b)
    monkeypatch.setitem(matmul._state, "ok", False)  # as with RIMS_RL_ONEDNN=0 or an old torch
    a32 = a.float()
    assert not matmul.uses_onednn(a32) and torch.equal(matmul.matmul(a32, b.float()), a32 @ b.float())


def test_onednn_switch_reads_the_environment(monkeypatch):
    monkeypatch.setattr(matmul, "_state", {})
    monkeypatch.setenv("RIMS_RL_ONEDNN", "0")
    assert not matmul.onednn_available()


@pytest.mark.skipif(not (kernel.available() and matmul.onednn_available()), reason="needs the kernel and oneDNN")
def test_kernel_path_is_the_same_with_and_without_onednn(monkeypatch):
    """The compiled RIMs path with its big products (and weight gradients) in oneDNN gives torch's
    values and gradients to float32 rounding."""
    torch.manual_seed(0)
    core = RIMs(96, RIMsConfig(num_units=4, k=2, unit_size=24))
    x = torch.randn(16, 8, 96)

    def grads():
        core.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        out = core(xx)[0]
        out.square().sum().backward()
        assert core.last_path == "cpp"
        return [out.detach(), xx.grad] + [p.grad for p in core.parameters()]

    with_onednn = grads()
    monkeypatch.setitem(matmul._state, "ok", False)
    for a, b in zip(with_onednn, grads()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
