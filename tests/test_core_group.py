"""Grouped per-RIM weights and cells: each RIM behaves like its own torch.nn cell."""
import torch

from rims_rl.group import GroupGRUCell, GroupLinear, GroupLSTMCell

K, B, I, H = 3, 4, 5, 6


def test_group_linear_applies_each_units_own_weights():
    torch.manual_seed(0)
    layer = GroupLinear(K, I, H)
    x = torch.randn(K, B, I)
    expected = torch.stack([x[k] @ layer.weight[k] + layer.bias[k] for k in range(K)])
    torch.testing.assert_close(layer(x), expected)
    assert GroupLinear(K, I, H, bias=False).bias is None


def test_group_lstm_cell_matches_torch_lstm_cell_per_unit():
    torch.manual_seed(0)
    cell = GroupLSTMCell(K, I, H)
    x, h, c = torch.randn(K, B, I), torch.randn(K, B, H), torch.randn(K, B, H)
    h_new, c_new = cell(cell.input_to_gates(x), cell.hidden_to_gates(h), (h, c))
    order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
    for k in range(K):  # torch order is [i, f, g, o]; ours is [i, f, o, g]
        ref = torch.nn.LSTMCell(I, H)
        with torch.no_grad():
            ref.weight_ih.copy_(cell.input_to_gates.weight[k].T[order])
            ref.weight_hh.copy_(cell.hidden_to_gates.weight[k].T[order])
            ref.bias_ih.copy_(cell.input_to_gates.bias[k, 0][order])
            ref.bias_hh.copy_(cell.hidden_to_gates.bias[k, 0][order])
        h_ref, c_ref = ref(x[k], (h[k], c[k]))
        torch.testing.assert_close(h_new[k], h_ref)
        torch.testing.assert_close(c_new[k], c_ref)


def test_group_gru_cell_matches_torch_gru_cell_per_unit():
    torch.manual_seed(0)
    cell = GroupGRUCell(K, I, H)
    x, h = torch.randn(K, B, I), torch.randn(K, B, H)
    (h_new,) = cell(cell.input_to_gates(x), cell.hidden_to_gates(h), (h,))
    for k in range(K):
        ref = torch.nn.GRUCell(I, H)
        with torch.no_grad():
            ref.weight_ih.copy_(cell.input_to_gates.weight[k].T)
            ref.weight_hh.copy_(cell.hidden_to_gates.weight[k].T)
            ref.bias_ih.copy_(cell.input_to_gates.bias[k, 0])
            ref.bias_hh.copy_(cell.hidden_to_gates.bias[k, 0])
        torch.testing.assert_close(h_new[k], ref(x[k], h[k]))


def test_units_do_not_share_weights():
    torch.manual_seed(0)
    cell = GroupGRUCell(K, I, H)
    x = torch.randn(1, B, I).expand(K, B, I)
    h = torch.zeros(K, B, H)
    (h_new,) = cell(cell.input_to_gates(x), cell.hidden_to_gates(h), (h,))
    assert not torch.allclose(h_new[0], h_new[1])
