"""Checks for chapter 12's exercises: RMSNorm by hand, a key-value cache's size, a mixture's active parameters."""

from __future__ import annotations

import torch

from shared.checks.common import correct, is_count, not_attempted
from shared.modern_blocks import RMSNorm


def check_exercise_12_1(rms_norm) -> None:
    """Exercise 12.1: `rms_norm(x, weight, eps)` equals the module `RMSNorm` on inputs with a non-zero mean."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=generator) * 4 + 3  # a mean far from 0: LayerNorm would differ
    weight = torch.rand(16, generator=generator) + 0.5
    result = rms_norm(x, weight, eps=1e-6)
    if not_attempted("12.1", result):
        return
    reference = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        reference.weight.copy_(weight)
        expected = reference(x)
    assert isinstance(result, torch.Tensor) and result.shape == x.shape, (
        f"rms_norm should return a tensor shaped like x, {tuple(x.shape)}, not {getattr(result, 'shape', result)!r}"
    )
    centred = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-6) * weight
    assert not torch.allclose(result, centred, atol=1e-4), (
        "that subtracts the mean: it is LayerNorm without the shift. RMSNorm divides by sqrt(mean(x**2) + eps) only"
    )
    assert not torch.allclose(result, expected / weight, atol=1e-4), "multiply by the gain, weight, at the end"
    assert not torch.allclose(result, expected * weight, atol=1e-4), "the gain is applied twice: multiply by it once"
    assert torch.allclose(result, expected, atol=1e-5), (
        "the result differs from RMSNorm: divide x by sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) (the mean "
        "over the last dimension, eps inside the root), then multiply by weight"
    )
    correct("12.1", "One reduction (the mean of squares) instead of LayerNorm's two, and no bias.")


def check_exercise_12_2(cache_bytes) -> None:
    """Exercise 12.2: bytes of Llama 3.2 3B's bf16 key-value cache for one sequence of 32,768 tokens."""
    if not_attempted("12.2", cache_bytes):
        return
    assert is_count(cache_bytes), f"cache_bytes={cache_bytes!r} should be a whole number of bytes"
    layers, kv_heads, head_dim, tokens = 28, 8, 3072 // 24, 32_768
    expected = 2 * layers * kv_heads * head_dim * 2 * tokens
    hints = {
        expected * 3: "that is multi-head attention's cache: only the n_kv_groups = 8 key/value heads are cached, "
                      "not the 24 query heads",
        expected // 2: "a cache holds keys AND values: two tensors per layer",
        expected * 2: "bfloat16 takes 2 bytes per number, not 4",
        expected // tokens: "that is per token; the exercise asks for 32,768 tokens",
    }
    assert int(cache_bytes) != 0 and int(cache_bytes) not in hints, hints.get(int(cache_bytes), "")
    assert int(cache_bytes) == expected, (
        f"{int(cache_bytes):,} bytes, expected {expected:,}: 2 (keys and values) x n_layers x n_kv_groups x head_dim "
        "(emb_dim / n_heads) x 2 bytes x tokens"
    )
    correct("12.2", f"{expected / 2**30:.1f} GiB per 32k-token sequence; with 24 kv heads it would be "
                    f"{3 * expected / 2**30:.1f} GiB.")


def check_exercise_12_3(active_parameters) -> None:
    """Exercise 12.3: Qwen3-30B-A3B's parameters that process one token (all but the experts not chosen)."""
    if not_attempted("12.3", active_parameters):
        return
    assert is_count(active_parameters), f"active_parameters={active_parameters!r} should be a whole number"
    total, layers, experts, top_k, emb, hidden, vocab = 30_532_122_624, 48, 128, 8, 2048, 768, 151_936
    per_expert = 3 * emb * hidden
    expected = total - layers * (experts - top_k) * per_expert
    hints = {
        total: "that is every parameter; leave out the 120 experts per layer the router did not choose",
        total - layers * experts * per_expert: "the 8 chosen experts per layer take part too",
        expected - vocab * emb: "the embedding counts too (one row of it is read per token, as the exercise says)",
        expected - 2 * vocab * emb: "the embedding and the output head count too",
        expected - layers * top_k * per_expert // 3: "each expert is a SwiGLU: three matrices, fc1, fc2 and fc3",
    }
    assert int(active_parameters) not in hints, hints.get(int(active_parameters), "")
    assert int(active_parameters) == expected, (
        f"{int(active_parameters):,}, expected {expected:,}: all parameters minus n_layers x (num_experts - "
        "num_experts_per_tok) x 3 x emb_dim x moe_intermediate_size"
    )
    correct("12.3", f"{expected / 1e9:.2f} B of {total / 1e9:.2f} B, the 'A3B' in the name.")
