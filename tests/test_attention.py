"""Attention modules: causality, the weight-split multi-head attention, the fused path and the KV cache."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from shared.attention import (
    CausalAttention,
    KVCache,
    LeftPadding,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
)


def test_self_attention_v1_equals_v2_with_transposed_weights():
    torch.manual_seed(123)
    x = torch.rand(6, 3)
    v2 = SelfAttention_v2(3, 2)
    v1 = SelfAttention_v1(3, 2)
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            getattr(v1, name).copy_(getattr(v2, name).weight.T)
    assert torch.allclose(v1(x), v2(x), atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: CausalAttention(4, 4, context_length=8, dropout=0.0),
    lambda: MultiHeadAttentionWrapper(4, 2, context_length=8, dropout=0.0, num_heads=3),
    lambda: MultiHeadAttention(4, 6, context_length=8, dropout=0.0, num_heads=3),
    lambda: MultiHeadAttention(4, 6, context_length=8, dropout=0.0, num_heads=3, use_sdpa=True),
])
def test_causal_modules_never_look_ahead(make):
    torch.manual_seed(0)
    module = make().eval()
    x = torch.randn(2, 8, 4)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 3, 4)  # rewrite the future from position 5 on
    with torch.no_grad():
        before, after = module(x), module(changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_wrapper_output_concatenates_heads():
    torch.manual_seed(0)
    mha = MultiHeadAttentionWrapper(3, 2, context_length=6, dropout=0.0, num_heads=2)
    assert mha(torch.rand(2, 6, 3)).shape == (2, 6, 4)


def test_weight_split_equals_separate_heads():
    # MultiHeadAttention's one big projection, split into heads, is the wrapper's separate heads.
    torch.manual_seed(0)
    d_in, d_out, heads = 5, 6, 3
    mha = MultiHeadAttention(d_in, d_out, context_length=7, dropout=0.0, num_heads=heads, qkv_bias=True).eval()
    wrapper = MultiHeadAttentionWrapper(d_in, d_out // heads, 7, 0.0, num_heads=heads, qkv_bias=True).eval()
    with torch.no_grad():
        for h, head in enumerate(wrapper.heads):
            rows = slice(h * mha.head_dim, (h + 1) * mha.head_dim)
            for name in ("W_query", "W_key", "W_value"):
                getattr(head, name).weight.copy_(getattr(mha, name).weight[rows])
                getattr(head, name).bias.copy_(getattr(mha, name).bias[rows])
        x = torch.randn(2, 7, d_in)
        assert torch.allclose(mha(x), mha.out_proj(wrapper(x)), atol=1e-6)


@given(
    st.integers(1, 3), st.integers(1, 12), st.integers(1, 4), st.integers(1, 4), st.booleans(),
)
def test_fused_path_equals_explicit_path(batch, tokens, num_heads, head_dim, qkv_bias):
    torch.manual_seed(tokens)
    d_out = num_heads * head_dim
    explicit = MultiHeadAttention(5, d_out, 12, 0.0, num_heads, qkv_bias=qkv_bias).eval()
    fused = MultiHeadAttention(5, d_out, 12, 0.0, num_heads, qkv_bias=qkv_bias, use_sdpa=True).eval()
    fused.load_state_dict(explicit.state_dict())
    x = torch.randn(batch, tokens, 5)
    with torch.no_grad():
        assert torch.allclose(explicit(x), fused(x), atol=1e-5)


@pytest.mark.parametrize("use_sdpa", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 9, [4, 1, 1, 3], [9], [2, 7]])
def test_kv_cache_equals_full_sequence(use_sdpa, chunks):
    torch.manual_seed(1)
    mha = MultiHeadAttention(6, 6, context_length=9, dropout=0.0, num_heads=2, use_sdpa=use_sdpa).eval()
    x = torch.randn(2, 9, 6)
    cache = KVCache(n_layers=1, max_length=9)
    outputs, start = [], 0
    with torch.no_grad():
        full = mha(x)
        for size in chunks:
            outputs.append(mha(x[:, start : start + size], kv_cache=cache, layer=0))
            cache.advance(size)
            start += size
    assert cache.length == 9
    assert torch.allclose(torch.cat(outputs, dim=1), full, atol=1e-5)


def test_d_out_must_divide_into_heads():
    with pytest.raises(ValueError, match=r"d_out=10 is not divisible by num_heads=4"):
        MultiHeadAttention(4, 10, context_length=8, dropout=0.0, num_heads=4)


def test_input_longer_than_context_length_is_a_clear_error():
    mha = MultiHeadAttention(4, 4, context_length=8, dropout=0.0, num_heads=2)
    with pytest.raises(ValueError, match=r"10 tokens exceed context_length=8.*last 8 tokens"):
        mha(torch.randn(1, 10, 4))


def test_cache_overflow_is_a_clear_error():
    cache = KVCache(n_layers=1, max_length=4)
    cache.update(0, torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    cache.advance(3)
    with pytest.raises(ValueError, match=r"holds 3 tokens and cannot take 2 more.*limit is 4"):
        cache.update(0, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_mask_is_not_saved_with_the_weights():
    mha = MultiHeadAttention(4, 4, context_length=8, dropout=0.0, num_heads=2)
    assert "mask" not in mha.state_dict()
    assert set(mha.state_dict()) == {
        "W_query.weight", "W_key.weight", "W_value.weight", "out_proj.weight", "out_proj.bias"
    }


def test_cache_used_with_another_batch_size_is_a_clear_error():
    cache = KVCache(n_layers=1, max_length=4)
    cache.update(0, torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))
    with pytest.raises(ValueError, match=r"holds a batch of 2 sequences, not 3"):
        cache.update(0, torch.zeros(3, 1, 1, 2), torch.zeros(3, 1, 1, 2))


def test_left_padding_hides_padding_keys_and_counts_positions_from_the_first_real_token():
    padding = LeftPadding(torch.tensor([2, 0]))
    causal = torch.ones(4, 4).triu(1).bool()
    hidden = padding.hide_padding(causal, start=0)
    assert hidden.shape == (2, 1, 4, 4)
    expected_row0 = torch.tensor([[0, 1, 1, 1],  # a padding query sees only itself (no all-masked row)
                                  [1, 0, 1, 1],
                                  [1, 1, 0, 1],  # real queries never see the two padding keys
                                  [1, 1, 0, 0]]).bool()
    assert torch.equal(hidden[0, 0], expected_row0) and torch.equal(hidden[1, 0], causal)
    assert padding.positions(0, 4).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    assert padding.positions(4, 1).tolist() == [[2], [4]]  # the next token, through a cache


@pytest.mark.parametrize("use_sdpa", [False, True])
def test_padded_rows_equal_unpadded_attention(use_sdpa):
    torch.manual_seed(2)
    mha = MultiHeadAttention(6, 6, context_length=8, dropout=0.0, num_heads=2, use_sdpa=use_sdpa).eval()
    x = torch.randn(2, 5, 6)
    padded = x.clone()
    padded[0, :3] = 1e4  # padding with huge values: any leak would show
    cache = KVCache(n_layers=1, max_length=8, padding=LeftPadding(torch.tensor([3, 0])))
    with torch.no_grad():
        out = mha(padded, kv_cache=cache)
        assert torch.isfinite(out).all()
        assert torch.allclose(out[0, 3:], mha(x[:1, 3:])[0], atol=1e-5)
        assert torch.allclose(out[1], mha(x[1:])[0], atol=1e-5)


def test_left_padding_needs_one_count_per_row():
    with pytest.raises(ValueError, match="1-D tensor of counts >= 0"):
        LeftPadding(torch.tensor([[1, 0]]))
    cache = KVCache(n_layers=1, max_length=4, padding=LeftPadding(torch.tensor([1, 0, 0])))
    with pytest.raises(ValueError, match="padding describes 3 rows, but the batch has 2"):
        cache.update(0, torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))
