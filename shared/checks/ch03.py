"""Checks for chapter 3's exercises (attention): v1 and v2 self-attention, the multi-head wrapper, GPT-2's size."""

from __future__ import annotations

import torch

from shared.checks.common import correct, not_attempted


def check_exercise_3_1(sa_v1, sa_v2, inputs) -> None:
    """Exercise 3.1: a SelfAttention_v1 given SelfAttention_v2's weights computes the same context vectors."""
    if not_attempted("3.1", sa_v1, sa_v2, inputs):
        return
    assert isinstance(sa_v1.W_query, torch.nn.Parameter), "sa_v1 should be a SelfAttention_v1 (weights as nn.Parameter)"
    assert isinstance(sa_v2.W_query, torch.nn.Linear), "sa_v2 should be a SelfAttention_v2 (weights in nn.Linear)"
    for name in ("W_query", "W_key", "W_value"):
        v1, v2 = getattr(sa_v1, name), getattr(sa_v2, name).weight
        assert v1.shape == v2.T.shape, (
            f"sa_v1.{name} has shape {tuple(v1.shape)}; nn.Linear stores its weight as (d_out, d_in), "
            f"so sa_v1.{name} should be sa_v2.{name}.weight transposed: shape {tuple(v2.T.shape)}"
        )
    with torch.no_grad():
        out1, out2 = sa_v1(inputs), sa_v2(inputs)
    assert torch.allclose(out1, out2, atol=1e-6), (
        "the two modules give different context vectors: copy each of sa_v2's weights, transposed, into sa_v1 "
        "(e.g. sa_v1.W_query = torch.nn.Parameter(sa_v2.W_query.weight.T))"
    )
    correct("3.1", "nn.Linear computes x @ W.T, so v1's matrices are v2's weights transposed.")


def check_exercise_3_2(mha, inputs) -> None:
    """Exercise 3.2: a MultiHeadAttentionWrapper with two heads whose context vectors are 2-dimensional."""
    if not_attempted("3.2", mha, inputs):
        return
    heads = getattr(mha, "heads", None)
    assert heads is not None and len(heads) == 2, "keep num_heads=2: the wrapper should hold two heads"
    with torch.no_grad():
        context_vecs = mha(inputs)
    assert context_vecs.shape[-1] == 2, (
        f"the context vectors have {context_vecs.shape[-1]} dimensions, not 2. The wrapper concatenates its "
        "heads' outputs, so the output size is num_heads * d_out: which d_out gives 2?"
    )
    correct("3.2", "With d_out=1 each head returns one number per token; the two heads concatenate to 2.")


def check_exercise_3_3(mha) -> None:
    """Exercise 3.3: a MultiHeadAttention the size of one of GPT-2 small's attention layers."""
    if not_attempted("3.3", mha):
        return
    checks = {
        "num_heads": (mha.num_heads, 12),
        "d_in (W_query.in_features)": (mha.W_query.in_features, 768),
        "d_out": (mha.d_out, 768),
        "head_dim": (mha.head_dim, 64),
        "context_length (mask size)": (mha.mask.shape[-1], 1024),
    }
    for name, (got, want) in checks.items():
        assert got == want, f"{name} is {got}; GPT-2 small's attention has {want}"
    correct("3.3", f"12 heads of 64 dimensions; {sum(p.numel() for p in mha.parameters()):,} parameters.")
