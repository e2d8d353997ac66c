"""Input attention and communication against straightforward reference formulas."""
import math

import torch

from rims_rl.attention import Communication, InputAttention


def test_communication_matches_multi_head_attention_with_gated_residual():
    torch.manual_seed(0)
    K, B, H, key, value, heads = 5, 7, 6, 4, 3, 2
    comm = Communication(K, H, key, value, heads, dropout=0.0)
    h = torch.randn(K, B, H)
    out, attention = comm(h)
    qkv = torch.stack([h[i] @ comm.query_key_value.weight[i] for i in range(K)])  # [K, B, heads*(2key+value)]
    q, k, v = qkv.view(K, B, heads, -1).permute(1, 2, 0, 3).split([key, key, value], dim=-1)
    ref_attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(key), dim=-1)  # [B, heads, K, K]
    read = (ref_attention @ v).permute(2, 0, 1, 3).reshape(K, B, heads * value)
    gate, update = comm.output_gate(read).split(H, dim=-1)
    torch.testing.assert_close(out, h + torch.sigmoid(gate) * torch.tanh(update))
    torch.testing.assert_close(attention.permute(2, 3, 0, 1), ref_attention)


def test_input_attention_null_row_softmax_and_read():
    torch.manual_seed(0)
    K, B, R, D, H, key, value, heads = 4, 3, 5, 6, 7, 8, 2, 2
    attn = InputAttention(D, K, H, key, value, heads, "null", dropout=0.0)
    x = torch.randn(1, B, R, D)
    h = torch.randn(K, B, H)
    keys, values = attn.project(x)
    probs, logits = attn.probabilities(attn.scores(attn.query(h), keys[0]))
    # reference: explicit zero null row prepended, full softmax over R+1 rows
    kv = x[0] @ attn.key_value.weight.T  # [B, R, heads*(key+value)]
    kv = torch.cat([torch.zeros(B, 1, kv.shape[-1]), kv], dim=1).view(B, R + 1, heads, key + value)
    k_ref, v_ref = kv.split([key, value], dim=-1)
    q = attn.query(h).view(K, B, heads, key)
    scores = torch.einsum("kbhd,brhd->kbhr", q, k_ref) / math.sqrt(key)
    p = torch.softmax(scores, dim=-1)
    torch.testing.assert_close(probs, p[..., 1:])
    # selection logits: log of the attention on the rows summed over heads (the activity times heads)
    torch.testing.assert_close(logits.exp() / heads, 1 - p[..., 0].mean(-1))
    read = torch.einsum("kbhr,brhd->kbhd", p, v_ref).reshape(K, B, heads * value)
    torch.testing.assert_close(attn.read(probs, values[0]), read)


def test_across_selection_is_a_softmax_over_units():
    torch.manual_seed(0)
    attn = InputAttention(6, 4, 5, 8, 3, 1, "across", dropout=0.0)
    keys, _ = attn.project(torch.randn(1, 2, 3, 6))
    probs, logits = attn.probabilities(attn.scores(attn.query(torch.randn(4, 2, 5)), keys[0]))
    torch.testing.assert_close(probs.sum(0), torch.ones(2, 1, 3))
    torch.testing.assert_close(logits.exp(), probs.sum(-1).squeeze(-1))
