"""Chapter 4's GPT model: layer norm, GELU, the feed-forward network, the transformer block, GPTModel.

The names and attributes are the book's (`tok_emb`, `trf_blocks`, `att`, `ff`, `norm1`, `scale`, ...),
so GPT-2's weights map onto them (see `shared/weights.py`). Beyond the book: the config is checked
with clear errors, attention runs PyTorch's fused kernel by default (`use_sdpa`), and
`generate_text_cached` generates with a key-value cache, giving exactly `generate_text_simple`'s tokens
(and, for a float32 model on a CPU, runs its linear layers on oneDNN's faster kernel: `shared/fast_linear.py`);
its loop, `decode_with_kv_cache`, also runs chapter 5's `generate` and `generate_batch`
(`shared/pretraining.py`), the latter for a left-padded batch of prompts of different lengths.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.attention import KVCache, LeftPadding, MultiHeadAttention
from shared.fast_linear import fast_cpu_linear, is_cpu_float32
from shared.static_decode import decode_static, static_decoding_applies

GPT_CONFIG_124M = {
    "vocab_size": 50257,  # Vocabulary size
    "context_length": 1024,  # Context length
    "emb_dim": 768,  # Embedding dimension
    "n_heads": 12,  # Number of attention heads
    "n_layers": 12,  # Number of layers
    "drop_rate": 0.1,  # Dropout rate
    "qkv_bias": False,  # Query-Key-Value bias
}
GPT_CONFIG_355M = {**GPT_CONFIG_124M, "emb_dim": 1024, "n_layers": 24, "n_heads": 16}
GPT_CONFIG_774M = {**GPT_CONFIG_124M, "emb_dim": 1280, "n_layers": 36, "n_heads": 20}
GPT_CONFIG_1558M = {**GPT_CONFIG_124M, "emb_dim": 1600, "n_layers": 48, "n_heads": 25}
GPT2_CONFIGS = {  # by the names of the Hugging Face checkpoints
    "gpt2": GPT_CONFIG_124M,
    "gpt2-medium": GPT_CONFIG_355M,
    "gpt2-large": GPT_CONFIG_774M,
    "gpt2-xl": GPT_CONFIG_1558M,
}

CONFIG_TYPES = {
    "vocab_size": int,
    "context_length": int,
    "emb_dim": int,
    "n_heads": int,
    "n_layers": int,
    "drop_rate": (int, float),
    "qkv_bias": bool,
}


def check_config(cfg: dict) -> None:
    """Raise a clear error if `cfg` lacks one of GPTModel's keys or has a value of the wrong type.

    Beyond the book.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"the config must be a dict like GPT_CONFIG_124M, not {type(cfg).__name__}.")
    missing = [key for key in CONFIG_TYPES if key not in cfg]
    if missing:
        raise KeyError(f"the config lacks {missing}; GPTModel needs {list(CONFIG_TYPES)} "
                       "(start from a copy of GPT_CONFIG_124M and change what you need).")
    for key, expected in CONFIG_TYPES.items():
        value = cfg[key]
        if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise TypeError(f"config[{key!r}] is {value!r} ({type(value).__name__}); it must be {names}.")
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
        if cfg[key] < 1:
            raise ValueError(f"config[{key!r}] is {cfg[key]}; it must be at least 1.")
    if not isinstance(cfg.get("use_sdpa", True), bool):
        raise TypeError(f"config['use_sdpa'] is {cfg['use_sdpa']!r}; it must be True or False.")
    if not 0 <= cfg["drop_rate"] < 1:
        raise ValueError(f"config['drop_rate'] is {cfg['drop_rate']}; it must be in [0, 1).")
    if cfg["emb_dim"] % cfg["n_heads"]:
        raise ValueError(f"config['emb_dim']={cfg['emb_dim']} is not divisible by config['n_heads']="
                         f"{cfg['n_heads']}: each head gets emb_dim / n_heads dimensions.")


class LayerNorm(nn.Module):
    """scale * (x - mean) / sqrt(var + eps) + shift, with the mean and biased variance of each token.

    F.layer_norm computes exactly this formula in one fused kernel: faster than the five steps
    written out, and it keeps fewer intermediate tensors in memory for the backward pass.

    Defined in section 4.2 of the book.
    """

    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU with the tanh approximation GPT-2 was trained with:
    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))), computed by one fused kernel.

    Defined in section 4.3 of the book.
    """

    def forward(self, x):
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """The feed-forward network of each transformer block: Linear(d, 4d), GELU, Linear(4d, d).

    Defined in section 4.3 of the book.
    """

    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]),
            GELU(),
            nn.Linear(4 * cfg["emb_dim"], cfg["emb_dim"]),
        )

    def forward(self, x):
        return self.layers(x)


class TransformerBlock(nn.Module):
    """Layer norm, multi-head attention, then layer norm, feed-forward, each with a shortcut connection.

    Defined in section 4.5 of the book; the `kv_cache` and `layer` arguments are beyond it.
    """

    def __init__(self, cfg):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"],
            d_out=cfg["emb_dim"],
            context_length=cfg["context_length"],
            num_heads=cfg["n_heads"],
            dropout=cfg["drop_rate"],
            qkv_bias=cfg["qkv_bias"],
            use_sdpa=cfg.get("use_sdpa", True),
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x, kv_cache=None, layer=0):
        # Shortcut connection for attention block
        shortcut = x
        x = self.norm1(x)
        x = self.att(x, kv_cache, layer)  # Shape [batch_size, num_tokens, emb_size]
        x = self.drop_shortcut(x)
        x = x + shortcut  # Add the original input back

        # Shortcut connection for feed forward block
        shortcut = x
        x = self.norm2(x)
        x = self.ff(x)
        x = self.drop_shortcut(x)
        x = x + shortcut  # Add the original input back
        return x


class GPTModel(nn.Module):
    """GPT-2's architecture: token and position embeddings, `n_layers` transformer blocks, the output head.

    Defined in section 4.6 of the book; the `kv_cache` argument is beyond it (a cache that carries a
    `LeftPadding` gives each row its own positions, counted from its first real token).
    """

    supports_left_padding = True  # beyond the book: a KVCache's LeftPadding is honoured (see generate_batch)

    def __init__(self, cfg):
        super().__init__()
        check_config(cfg)
        self.cfg = dict(cfg)
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])

        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])

        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx, kv_cache=None):
        batch_size, seq_len = in_idx.shape
        start = 0 if kv_cache is None else kv_cache.length  # position of the first new token
        if start + seq_len > self.cfg["context_length"]:
            raise ValueError(
                f"the input has {seq_len} tokens" + (f" after {start} cached ones" if start else "")
                + f", more than the model's context_length={self.cfg['context_length']}. "
                f"Crop it to the last {self.cfg['context_length'] - start} tokens, e.g. idx[:, -context_length:]."
            )
        tok_embeds = self.tok_emb(in_idx)
        if kv_cache is not None and kv_cache.padding is not None:  # a left-padded batch: positions per row
            pos_embeds = self.pos_emb(kv_cache.padding.positions(start, seq_len))
        else:
            pos_embeds = self.pos_emb(torch.arange(start, start + seq_len, device=in_idx.device))
        x = tok_embeds + pos_embeds  # Shape [batch_size, num_tokens, emb_size]
        x = self.drop_emb(x)
        for layer, block in enumerate(self.trf_blocks):
            x = block(x, kv_cache, layer)
        if kv_cache is not None:
            kv_cache.advance(seq_len)
        x = self.final_norm(x)
        logits = self.out_head(x)
        return logits


def generate_text_simple(model, idx, max_new_tokens, context_size):
    """Greedy generation: append the most likely next token, `max_new_tokens` times.

    Defined in section 4.7 of the book.
    """
    # idx is (batch, n_tokens) array of indices in the current context
    for _ in range(max_new_tokens):
        # Crop current context if it exceeds the supported context size
        # E.g., if LLM supports only 5 tokens, and the context size is 10
        # then only the last 5 tokens are used as context
        idx_cond = idx[:, -context_size:]

        # Get the predictions
        with torch.no_grad():
            logits = model(idx_cond)

        # Focus only on the last time step
        # (batch, n_tokens, vocab_size) becomes (batch, vocab_size)
        logits = logits[:, -1, :]

        # Apply softmax to get probabilities
        probas = torch.softmax(logits, dim=-1)  # (batch, vocab_size)

        # Get the idx of the vocab entry with the highest probability value
        idx_next = torch.argmax(probas, dim=-1, keepdim=True)  # (batch, 1)

        # Append sampled index to the running sequence
        idx = torch.cat((idx, idx_next), dim=1)  # (batch, n_tokens+1)

    return idx


def decode_with_kv_cache(model, idx, max_new_tokens, context_size, pick_next_token, pad_lengths=None):
    """The decoding loop of `generate_text_cached` and of chapter 5's `generate`, with a key-value cache.

    `pick_next_token(logits)` turns the last position's logits (batch, vocab_size) into the next
    token ids (batch, 1), or returns None to stop early. `pad_lengths` (batch,) says how many padding
    tokens start each row of a left-padded `idx` (chapter 5's `generate_batch`); None: no padding.
    A GPTModel in eval mode on a CUDA GPU decodes through `decode_static` instead (a fixed-shape cache
    and one compiled step: the same tokens, several times faster there).

    Beyond the book.
    """
    if static_decoding_applies(model, pad_lengths):
        return decode_static(model, idx, max_new_tokens, context_size, pick_next_token)
    # oneDNN's faster one-token products help a float32 model on a CPU; elsewhere the mode only costs time.
    linear_mode = fast_cpu_linear if is_cpu_float32(model) else contextlib.nullcontext
    kv_cache, next_input = None, idx
    for _ in range(max_new_tokens):
        if kv_cache is None or kv_cache.length + 1 > context_size:
            padding = padding_in_view(pad_lengths, idx.shape[1], context_size)
            kv_cache = KVCache(len(model.trf_blocks), context_size, padding)
            next_input = idx[:, -context_size:]  # (re)fill the cache with the whole visible context
        with torch.no_grad(), linear_mode():
            logits = model(next_input, kv_cache=kv_cache)
        idx_next = pick_next_token(logits[:, -1, :])
        if idx_next is None:
            break
        idx = torch.cat((idx, idx_next), dim=1)
        next_input = idx_next  # from now on, only the newest token goes through the model
    return idx


def padding_in_view(pad_lengths: torch.Tensor | None, width: int, context_size: int) -> LeftPadding | None:
    """The padding left in the last `context_size` columns of a left-padded batch `width` columns wide.

    None when no row has padding there (the model's plain path). Beyond the book.
    """
    if pad_lengths is None:
        return None
    visible = (pad_lengths - max(0, width - context_size)).clamp(min=0)
    return LeftPadding(visible) if bool(visible.any()) else None


def generate_text_cached(model, idx, max_new_tokens, context_size):
    """Greedy generation like `generate_text_simple`, with a key-value cache: the same tokens, but
    after the prompt each step runs the model on one new token instead of the whole context.

    Positions are absolute, so once the text outgrows `context_size` the cached keys sit at the
    wrong positions; the cache is then rebuilt from the last `context_size` tokens each step, exactly
    as `generate_text_simple` crops its input.

    Beyond the book.
    """

    def greedy(logits):
        return torch.argmax(logits, dim=-1, keepdim=True)  # the most likely token, as generate_text_simple picks

    return decode_with_kv_cache(model, idx, max_new_tokens, context_size, greedy)


def init_gpt2_style(model: GPTModel) -> None:
    """GPT-2's initialisation, in place: weights ~ N(0, 0.02), biases 0, and the two projections that feed each
    shortcut scaled by 1/sqrt(2 * n_layers), so the residual stream does not grow with depth.

    Beyond the book (which keeps PyTorch's defaults, N(0, 1) embeddings: they train, but more slowly
    at the learning rates the training command uses). GPT-2's paper, section 2.3, describes it.
    """
    std = 0.02
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
    residual_std = std / math.sqrt(2 * model.cfg["n_layers"])
    for block in model.trf_blocks:
        nn.init.normal_(block.att.out_proj.weight, mean=0.0, std=residual_std)
        nn.init.normal_(block.ff.layers[2].weight, mean=0.0, std=residual_std)
