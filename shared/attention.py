"""Chapter 3's attention modules, from a single self-attention head to efficient multi-head attention.

`SelfAttention_v1`, `SelfAttention_v2`, `CausalAttention` and `MultiHeadAttentionWrapper` are the
book's steps; `MultiHeadAttention` is the finished module the GPT model uses. Beyond the book it checks its sizes, it
can run PyTorch's fused `scaled_dot_product_attention` (same result, less memory; see `attend`) and it
can attend over a `KVCache`, so that generation feeds in only the newest token instead of the whole context.
A cache may carry a `LeftPadding`: a batch of prompts of different lengths, each padded on the left, then
hides the padding from every query and counts each row's positions from its first real token.
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


class LeftPadding:
    """How many padding tokens precede each row's prompt in a batch of prompts of different lengths.

    Generating for several prompts at once puts them in one (batch, tokens) tensor, the shorter ones
    padded on the left so that every row's newest token is in the last column. A `KVCache` carrying
    this object tells the model to give each row's first real token position 0 (`positions`) and
    to hide the padding keys from every query (`hide_padding`). See `generate_batch` in chapter 5.

    Beyond the book.
    """

    def __init__(self, lengths: torch.Tensor):
        if lengths.dim() != 1 or lengths.dtype.is_floating_point or bool((lengths < 0).any()):
            raise ValueError(f"padding lengths must be a 1-D tensor of counts >= 0, one per row, not {lengths!r}.")
        self.lengths = lengths  # (batch,): padding tokens at the start of each row
        self._mask_key, self._mask = None, None  # the last mask made, reused by every layer of one step

    def positions(self, start: int, num_tokens: int) -> torch.Tensor:
        """Each row's positions for cache slots start .. start + num_tokens - 1: (batch, num_tokens).

        A row's first real token is at position 0; its padding slots get position 0 too (nothing sees them).
        """
        slots = torch.arange(start, start + num_tokens, device=self.lengths.device)
        return (slots - self.lengths[:, None]).clamp(min=0)

    def hide_padding(self, causal_mask: torch.Tensor, start: int) -> torch.Tensor:
        """The causal mask (new tokens, all keys), with each row's padding keys hidden too: (batch, 1, new, keys).

        True means "may not look". A padding query may still look at itself, so that no row of
        attention weights is all masked (a softmax over nothing gives NaN); its output is never used.
        """
        num_tokens, total = causal_mask.shape
        if self._mask_key != (start, num_tokens, total):
            keys = torch.arange(total, device=self.lengths.device)
            queries = torch.arange(start, start + num_tokens, device=self.lengths.device)
            padding_key = keys < self.lengths[:, None]  # (batch, keys)
            hidden = causal_mask | padding_key[:, None, :]  # (batch, new, keys)
            hidden &= keys != queries[:, None]  # every query may see itself
            self._mask_key, self._mask = (start, num_tokens, total), hidden[:, None]  # one mask for all heads
        return self._mask


class KVCache:
    """The keys and values of the tokens processed so far, for every transformer block.

    Generation then feeds the model only the new token: each block appends its key and value here
    and attends over everything stored. Buffers are allocated once, for `max_length` tokens.
    `padding` describes a left-padded batch of prompts of different lengths (see `LeftPadding`).

    Beyond the book.
    """

    def __init__(self, n_layers: int, max_length: int, padding: LeftPadding | None = None):
        self.max_length = max_length
        self.length = 0  # tokens stored so far (the position of the next token)
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.padding = padding  # None: every row starts at position 0, without padding

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
        if self.padding is not None and self.padding.lengths.shape[0] != keys.shape[0]:
            raise ValueError(f"the cache's padding describes {self.padding.lengths.shape[0]} rows, but the batch "
                             f"has {keys.shape[0]}: give one padding length per row.")
        self.keys[layer][:, :, start:end] = keys
        self.values[layer][:, :, start:end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, num_tokens: int) -> None:
        """Mark `num_tokens` more positions as stored (called once per forward pass, after all layers)."""
        self.length += num_tokens


def attend(queries, keys, values, mask, dropout: nn.Dropout, use_sdpa: bool = False) -> torch.Tensor:
    """Each head's context vectors: softmax(queries @ keys^T / sqrt(head_dim)), masked and dropped out, @ values.

    The tensors are (b, num_heads, tokens, head_dim); `mask` (tokens, keys), or (b, 1, tokens, keys) for a
    padded batch, is True where a query must not look.
    `use_sdpa=True` hands the same computation to PyTorch's fused `scaled_dot_product_attention`.

    The explicit steps are section 3.6.2 of the book; `use_sdpa` is beyond it.
    """
    if use_sdpa:
        # Nothing cached and no padding: the plain causal mask, PyTorch's fastest path.
        causal = mask.dim() == 2 and mask.shape[0] == mask.shape[1]
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
    see `attend`) and `kv_cache` (with this block's `layer` index): generation attends over cached keys,
    hiding the padding of a left-padded batch when the cache carries a `LeftPadding`.
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
        if kv_cache is not None and kv_cache.padding is not None:  # a left-padded batch: hide the padding
            mask = kv_cache.padding.hide_padding(mask, start)
        context_vec = attend(queries, keys, values, mask, self.dropout, self.use_sdpa)
        # Combine heads: (b, num_tokens, num_heads, head_dim) -> (b, num_tokens, d_out)
        context_vec = context_vec.transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
        return self.out_proj(context_vec)
