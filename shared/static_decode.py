"""Generation with a key-value cache of fixed shape and one compiled single-token step: decoding at GPU speed.

On a GPU, one decoding step of a small model is a few hundred tiny kernels; launching them from
Python costs more time than running them, so chapter 4's cache (which saves arithmetic) does not
help there. The cure, as in PyTorch's gpt-fast, is to give every step the same shapes: the cache
is allocated once for the whole context, each step writes its keys and values at a position held
in a tensor and attends over every slot with a mask, and then `torch.compile` (with
`mode="reduce-overhead"`: CUDA graphs) records the whole step once and replays it with one launch.

`decode_static` is what `decode_with_kv_cache` (chapter 4) runs for a `GPTModel` in eval mode on a
CUDA device; it gives the same tokens. Beyond the book.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class StaticDecoder(nn.Module):
    """A GPTModel's forward pass over its own key-value cache of shape (layers, batch, heads, context, head_dim).

    `decoder(idx, positions)` runs the tokens `idx` (batch, n) at `positions` (n,), a tensor, stores
    their keys and values at those slots, and returns the logits of the last token (batch, vocab).
    Shapes do not depend on how much is cached, so one compiled graph serves every one-token step.
    """

    def __init__(self, model: nn.Module, batch_size: int, max_length: int):
        super().__init__()
        cfg = model.cfg
        if not 1 <= max_length <= cfg["context_length"]:
            raise ValueError(f"max_length={max_length} must be between 1 and the model's context_length="
                             f"{cfg['context_length']}.")
        self.model = model
        att = model.trf_blocks[0].att
        weight = model.tok_emb.weight
        shape = (cfg["n_layers"], batch_size, att.num_heads, max_length, att.head_dim)
        self.register_buffer("keys", weight.new_zeros(shape), persistent=False)
        self.register_buffer("values", weight.new_zeros(shape), persistent=False)
        self.register_buffer("slots", torch.arange(max_length, device=weight.device), persistent=False)

    def forward(self, idx: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        model = self.model
        x = model.drop_emb(model.tok_emb(idx) + model.pos_emb(positions))
        visible = self.slots[None, :] <= positions[:, None]  # (n, slots): True where a query may look
        for layer, block in enumerate(model.trf_blocks):
            x = x + block.drop_shortcut(self._attend(block.att, block.norm1(x), layer, positions, visible))
            x = x + block.drop_shortcut(block.ff(block.norm2(x)))
        return model.out_head(model.final_norm(x[:, -1]))  # only the last token's logits are needed

    def _attend(self, att: nn.Module, x: torch.Tensor, layer: int, positions: torch.Tensor,
                visible: torch.Tensor) -> torch.Tensor:
        """Chapter 3's MultiHeadAttention, writing this step's keys and values into the fixed-shape cache."""
        b, n, _ = x.shape
        queries, keys, values = (w(x).view(b, n, att.num_heads, att.head_dim).transpose(1, 2)
                                 for w in (att.W_query, att.W_key, att.W_value))
        self.keys[layer].index_copy_(2, positions, keys)
        self.values[layer].index_copy_(2, positions, values)
        context = F.scaled_dot_product_attention(queries, self.keys[layer], self.values[layer], attn_mask=visible)
        return att.out_proj(context.transpose(1, 2).reshape(b, n, att.d_out))


def static_decoding_applies(model: nn.Module, pad_lengths: torch.Tensor | None) -> bool:
    """Whether `decode_with_kv_cache` runs `decode_static` by itself: a GPTModel in eval mode on a CUDA device,
    without left padding (the dynamic cache handles padded batches and every other case)."""
    from shared.transformer import GPTModel

    return (isinstance(model, GPTModel) and not model.training and pad_lengths is None
            and model.tok_emb.weight.device.type == "cuda")


def decode_static(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int,
                  pick_next_token: Callable[[torch.Tensor], torch.Tensor | None],
                  compile: bool = True) -> torch.Tensor:
    """`decode_with_kv_cache`'s loop over a `StaticDecoder`: the prompt in one eager pass, then one token per step
    through a graph compiled once (`compile=True`; on CUDA with CUDA graphs). Returns `idx` extended.

    Past `context_size` tokens the cache is refilled from the last `context_size` each step, as chapter 4's
    loop does, since GPT-2's positions are absolute.
    """
    if context_size > model.cfg["context_length"]:
        raise ValueError(f"context_size={context_size} exceeds the model's context_length="
                         f"{model.cfg['context_length']}: use at most that.")
    decoder = StaticDecoder(model, idx.shape[0], context_size)
    step = decoder
    if compile:
        mode = "reduce-overhead" if idx.device.type == "cuda" else None  # CUDA graphs need a CUDA device
        step = torch.compile(decoder, mode=mode, fullgraph=True)
    length, next_input = 0, idx[:, -context_size:]
    position = torch.zeros(1, dtype=torch.long, device=idx.device)  # the one-token step's input, set in place
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if length + next_input.shape[1] > context_size:  # full: refill with the visible window
                length, next_input = 0, idx[:, -context_size:]
            if next_input.shape[1] == 1:  # the compiled graph, always with the same input shapes
                logits = step(next_input, position.fill_(length))
            else:  # a prompt or a refill: eager, any length
                logits = decoder(next_input, decoder.slots[length : length + next_input.shape[1]])
            length += next_input.shape[1]
            idx_next = pick_next_token(logits.clone())  # a CUDA graph reuses its output buffer next step
            if idx_next is None:
                break
            idx = torch.cat((idx, idx_next), dim=1)
            next_input = idx_next
    return idx
