"""Chapter 3's attention modules, from a single self-attention head to efficient multi-head attention.

`SelfAttention_v1`, `SelfAttention_v2`, `CausalAttention` and `MultiHeadAttentionWrapper` are the
book's steps; `MultiHeadAttention` is the finished module the GPT model uses. Beyond the book it checks its sizes, it
can run PyTorch's fused `scaled_dot_product_attention` (same result, less memory; see `attend`) and it
can attend over a `KVCache`, so that generation feeds in only the newest token instead of the whole context.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention_v1(nn.Module):
    """Self-attention with trainable query, key and value matrices (`nn.Parameter`), for one sequence.

    Defined in section 3.4.2 of the book.
    """

    def __init__(self, d_in, d_out):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x):
        keys = x @ self.W_key
        queries = x @ self.W_query
        values = x @ self.W_value
        attn_scores = queries @ keys.T  # omega
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        context_vec = attn_weights @ values
        return context_vec


class SelfAttention_v2(nn.Module):
    """`SelfAttention_v1` with `nn.Linear` projections, which start from better initial weights.

    Defined in section 3.4.2 of the book.
    """

    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x):
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.T
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        context_vec = attn_weights @ values
        return context_vec


class CausalAttention(nn.Module):
    """Single-head self-attention over a batch, with a causal mask and dropout on the attention weights.

    Defined in section 3.5.3 of the book.
    """

    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # True above the diagonal: the future positions each token must not see.
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1).bool(),
                             persistent=False)

    def forward(self, x):
        b, num_tokens, d_in = x.shape
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)

        attn_scores = queries @ keys.transpose(1, 2)
        attn_scores = attn_scores.masked_fill(self.mask[:num_tokens, :num_tokens], -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)

        context_vec = attn_weights @ values
        return context_vec


class MultiHeadAttentionWrapper(nn.Module):
    """Multi-head attention as `num_heads` separate `CausalAttention` heads, their outputs concatenated.

    Defined in section 3.6.1 of the book.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.heads = nn.ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)]
        )

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], dim=-1)


class KVCache:
    """The keys and values of the tokens processed so far, for every transformer block.

    Generation then feeds the model only the new token: each block appends its key and value here
    and attends over everything stored. Buffers are allocated once, for `max_length` tokens.

    Beyond the book.
    """

    def __init__(self, n_layers: int, max_length: int):
        self.max_length = max_length
        self.length = 0  # tokens stored so far (the position of the next token)
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys and values (b, heads, new, head_dim); return all stored so far."""
        start, end = self.length, self.length + keys.shape[2]
        if end > self.max_length:
            raise ValueError(f"the cache holds {start} tokens and cannot take {keys.shape[2]} more: "
                             f"its limit is {self.max_length}. Start a new cache.")
        if self.keys[layer] is None:
            b, h, _, d = keys.shape
            self.keys[layer] = keys.new_empty(b, h, self.max_length, d)
            self.values[layer] = values.new_empty(b, h, self.max_length, d)
        elif keys.shape[0] != self.keys[layer].shape[0]:
            raise ValueError(f"the cache holds a batch of {self.keys[layer].shape[0]} sequences, not "
                             f"{keys.shape[0]}: use one cache per batch.")
        self.keys[layer][:, :, start:end] = keys
        self.values[layer][:, :, start:end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, num_tokens: int) -> None:
        """Mark `num_tokens` more positions as stored (called once per forward pass, after all layers)."""
        self.length += num_tokens


def attend(queries, keys, values, mask, dropout: nn.Dropout, use_sdpa: bool = False) -> torch.Tensor:
    """Each head's context vectors: softmax(queries @ keys^T / sqrt(head_dim)), masked and dropped out, @ values.

    The tensors are (b, num_heads, tokens, head_dim); `mask` is True where a query must not look.
    `use_sdpa=True` hands the same computation to PyTorch's fused `scaled_dot_product_attention`.

    The explicit steps are section 3.6.2 of the book; `use_sdpa` is beyond it.
    """
    if use_sdpa:
        causal = mask.shape[0] == mask.shape[1]  # nothing cached: the plain causal mask, PyTorch's fastest path
        return F.scaled_dot_product_attention(
            queries, keys, values, attn_mask=None if causal else ~mask, is_causal=causal,
            dropout_p=dropout.p if dropout.training else 0.0,
        )
    attn_scores = queries @ keys.transpose(2, 3)  # dot product for each head
    attn_scores = attn_scores.masked_fill(mask, -torch.inf)
    attn_weights = torch.softmax(attn_scores / queries.shape[-1] ** 0.5, dim=-1)
    attn_weights = dropout(attn_weights)
    return attn_weights @ values  # (b, num_heads, num_tokens, head_dim)


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with one weight matrix per projection, split into heads.

    Defined in section 3.6.2 of the book. Beyond it: clear errors, `use_sdpa=True` (PyTorch's fused kernel,
    see `attend`) and `kv_cache` (with this block's `layer` index): generation attends over cached keys.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False, use_sdpa=False):
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out={d_out} is not divisible by num_heads={num_heads}: each head gets "
                             f"d_out / num_heads dimensions. Pick a d_out that is a multiple of {num_heads}.")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads  # each head gets an equal share of d_out
        self.context_length = context_length
        self.use_sdpa = use_sdpa

        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # combines the heads' outputs
        self.dropout = nn.Dropout(dropout)
        # True above the diagonal: the future each token must not see. Rebuilt, not saved (persistent=False).
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1).bool(),
                             persistent=False)

    def forward(self, x, kv_cache: KVCache | None = None, layer: int = 0):
        b, num_tokens, d_in = x.shape
        start = 0 if kv_cache is None else kv_cache.length  # position of the first new token
        if start + num_tokens > self.context_length:
            raise ValueError(f"{start + num_tokens} tokens exceed context_length={self.context_length}: "
                             f"crop the input to its last {self.context_length} tokens.")

        # (b, num_tokens, d_out) -> (b, num_heads, num_tokens, head_dim)
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        keys = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        if kv_cache is not None:
            keys, values = kv_cache.update(layer, keys, values)
        # Rows: the new tokens' positions; columns: every position they may look back to.
        mask = self.mask[start : start + num_tokens, : start + num_tokens]
        context_vec = attend(queries, keys, values, mask, self.dropout, self.use_sdpa)
        # Combine heads: (b, num_tokens, num_heads, head_dim) -> (b, num_tokens, d_out)
        context_vec = context_vec.transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
        return self.out_proj(context_vec)
