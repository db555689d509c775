"""The pieces that turn chapter 4's GPT into today's open models (Llama 3, Qwen3): chapter 12.

Each replaces one part of `GPTModel`: `RMSNorm` for `LayerNorm`, rotary position embeddings
(`compute_rope_params`, `apply_rope`) for the learned position embedding, the SwiGLU `FeedForward`
for the GELU one, `GroupedQueryAttention` (optionally with QK-norm) for `MultiHeadAttention`, and
`MoEFeedForward` (a router choosing a few experts per token) as a larger, sparse feed-forward.
`RoPEDecoder` assembles them; `shared/llama3.py` and `shared/qwen3.py` are its two configurations.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.attention import KVCache


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned gain: LayerNorm without the
    mean subtraction and the bias (Zhang & Sennrich 2019). Computed in float32 whatever the input."""

    def __init__(self, emb_dim: int, eps: float = 1e-6, dtype: torch.dtype | None = None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(emb_dim, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def llama3_scaled_frequencies(inv_freq: torch.Tensor, freq_config: dict) -> torch.Tensor:
    """Llama 3's long-context RoPE: slow rotations (long wavelengths) are slowed `factor` times more,
    fast ones are kept, and those in between are blended, so a model trained on
    `original_context_length` tokens reads `factor` times as many."""
    factor = freq_config["factor"]
    low, high = freq_config["low_freq_factor"], freq_config["high_freq_factor"]
    original = freq_config["original_context_length"]
    wavelength = 2 * math.pi / inv_freq
    # 0 where the wavelength is long (scale fully), 1 where it is short (keep), linear in between.
    keep = ((original / wavelength - low) / (high - low)).clamp(0.0, 1.0)
    return (1 - keep) * inv_freq / factor + keep * inv_freq


def compute_rope_params(head_dim: int, theta_base: float = 10_000.0, context_length: int = 4096,
                        freq_config: dict | None = None, dtype: torch.dtype = torch.float32,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosines and sines of every position's rotation angles, each `(context_length, head_dim)`.

    Pair i of a head's dimensions turns by `position * theta_base ** (-2i / head_dim)` radians: fast
    for the first pairs, slow for the last. `freq_config` applies Llama 3's frequency scaling.
    """
    if head_dim % 2:
        raise ValueError(f"head_dim={head_dim} is odd: RoPE rotates pairs of dimensions, so it must be even.")
    inv_freq = 1.0 / theta_base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if freq_config is not None:
        inv_freq = llama3_scaled_frequencies(inv_freq, freq_config)
    angles = torch.arange(context_length, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=1)  # dimension j and j + head_dim/2 form a pair
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Rotate the queries or keys `x` (batch, heads, tokens, head_dim) by their positions' angles;
    `offset` is the position of the first token (the tokens a key-value cache already holds)."""
    num_tokens, half = x.shape[2], x.shape[3] // 2
    cos, sin = cos[offset : offset + num_tokens], sin[offset : offset + num_tokens]
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (x1, x2) -> (-x2, x1)
    return (x * cos + rotated * sin).to(x.dtype)


class FeedForward(nn.Module):
    """SwiGLU feed-forward: a SiLU-activated gate (`fc1`) multiplies a second projection (`fc2`),
    and `fc3` projects back; no biases (Shazeer 2020, used by Llama and Qwen)."""

    def __init__(self, emb_dim: int, hidden_dim: int, dtype: torch.dtype | None = None):
        super().__init__()
        self.fc1 = nn.Linear(emb_dim, hidden_dim, bias=False, dtype=dtype)
        self.fc2 = nn.Linear(emb_dim, hidden_dim, bias=False, dtype=dtype)
        self.fc3 = nn.Linear(hidden_dim, emb_dim, bias=False, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.silu(self.fc1(x)) * self.fc2(x))


class GroupedQueryAttention(nn.Module):
    """Causal attention in which `num_heads` query heads share `num_kv_groups` key/value heads
    (Ainslie et al. 2023): the key-value cache shrinks by `num_heads / num_kv_groups`. One group is
    multi-query attention, `num_kv_groups == num_heads` is chapter 3's multi-head attention.

    `head_dim` may differ from `d_in / num_heads` (Qwen3); `qk_norm` applies RMSNorm to each query
    and key head before the rotation (Qwen3). No biases, and the causal mask is built per call.
    """

    def __init__(self, d_in: int, num_heads: int, num_kv_groups: int, head_dim: int | None = None,
                 qk_norm: bool = False, dtype: torch.dtype | None = None):
        super().__init__()
        if num_heads % num_kv_groups:
            raise ValueError(f"num_heads={num_heads} is not a multiple of n_kv_groups={num_kv_groups}: each "
                             f"key/value head serves the same number of query heads. Pick a divisor of {num_heads}.")
        if head_dim is None:
            if d_in % num_heads:
                raise ValueError(f"emb_dim={d_in} is not divisible by n_heads={num_heads}: give head_dim.")
            head_dim = d_in // num_heads
        self.num_heads, self.num_kv_groups, self.head_dim = num_heads, num_kv_groups, head_dim
        self.group_size = num_heads // num_kv_groups
        self.W_query = nn.Linear(d_in, num_heads * head_dim, bias=False, dtype=dtype)
        self.W_key = nn.Linear(d_in, num_kv_groups * head_dim, bias=False, dtype=dtype)
        self.W_value = nn.Linear(d_in, num_kv_groups * head_dim, bias=False, dtype=dtype)
        self.out_proj = nn.Linear(num_heads * head_dim, d_in, bias=False, dtype=dtype)
        self.q_norm = RMSNorm(head_dim, dtype=dtype) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, dtype=dtype) if qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, num_tokens, _ = x.shape
        start = 0 if kv_cache is None else kv_cache.length  # position of the first new token
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        keys = self.W_key(x).view(b, num_tokens, self.num_kv_groups, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, num_tokens, self.num_kv_groups, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            queries, keys = self.q_norm(queries), self.k_norm(keys)
        queries, keys = apply_rope(queries, cos, sin, start), apply_rope(keys, cos, sin, start)
        if kv_cache is not None:  # the cache stores only the num_kv_groups heads
            keys, values = kv_cache.update(layer, keys, values)

        # Each key/value head serves group_size consecutive query heads.
        keys = keys.repeat_interleave(self.group_size, dim=1)
        values = values.repeat_interleave(self.group_size, dim=1)
        attn_scores = queries @ keys.transpose(2, 3) / self.head_dim**0.5
        total = keys.shape[2]
        future = torch.ones(num_tokens, total, dtype=torch.bool, device=x.device).triu(start + 1)
        attn_scores = attn_scores.masked_fill(future, -torch.inf)
        attn_weights = torch.softmax(attn_scores.float(), dim=-1).to(values.dtype)
        context = (attn_weights @ values).transpose(1, 2).reshape(b, num_tokens, -1)
        return self.out_proj(context)


class MoEFeedForward(nn.Module):
    """A mixture of `num_experts` SwiGLU feed-forwards; a router (`gate`) sends each token to its
    `num_experts_per_tok` highest-scoring experts and mixes their outputs with the renormalised
    router probabilities (Qwen3-MoE). Only the chosen experts run, so compute per token stays small.

    After each forward pass `last_router_logits` (tokens, experts) holds the router's scores, for the
    load-balancing loss and for plotting how tokens spread over experts.
    """

    def __init__(self, emb_dim: int, moe_hidden_dim: int, num_experts: int, num_experts_per_tok: int,
                 dtype: torch.dtype | None = None):
        super().__init__()
        if not 1 <= num_experts_per_tok <= num_experts:
            raise ValueError(f"num_experts_per_tok={num_experts_per_tok} must be between 1 and "
                             f"num_experts={num_experts}.")
        self.num_experts, self.top_k = num_experts, num_experts_per_tok
        self.gate = nn.Linear(emb_dim, num_experts, bias=False, dtype=dtype)
        def experts(d_in, d_out):
            return nn.ModuleList(nn.Linear(d_in, d_out, bias=False, dtype=dtype) for _ in range(num_experts))

        self.fc1 = experts(emb_dim, moe_hidden_dim)  # gates
        self.fc2 = experts(emb_dim, moe_hidden_dim)  # values
        self.fc3 = experts(moe_hidden_dim, emb_dim)  # back to emb_dim
        self.last_router_logits: torch.Tensor | None = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's chosen experts and their mixing weights, both (tokens, num_experts_per_tok)."""
        logits = self.gate(x)
        self.last_router_logits = logits.detach()
        probs = torch.softmax(logits.float(), dim=-1)
        weights, experts = probs.topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return experts, weights.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        experts, weights = self.route(tokens)
        out = torch.zeros_like(tokens)
        for e in experts.unique().tolist():  # only the experts some token chose
            rows, slot = torch.where(experts == e)
            h = tokens[rows]
            h = self.fc3[e](F.silu(self.fc1[e](h)) * self.fc2[e](h))
            out.index_add_(0, rows, h * weights[rows, slot, None])
        return out.reshape(shape)


def load_balancing_loss(router_logits: torch.Tensor, num_experts_per_tok: int) -> torch.Tensor:
    """The Switch Transformer's auxiliary loss (Fedus et al. 2021), as Qwen3-MoE trains with it:
    `num_experts * sum_e f_e * P_e`, summed over the top-k slots: f_e is the fraction of tokens whose
    slot goes to expert e, P_e its mean router probability. It is `num_experts_per_tok` when tokens
    spread evenly over the experts and grows as they crowd onto a few."""
    num_experts = router_logits.shape[-1]
    probs = torch.softmax(router_logits.reshape(-1, num_experts).float(), dim=-1)
    chosen = probs.topk(num_experts_per_tok, dim=-1).indices
    fraction = F.one_hot(chosen, num_experts).float().mean(dim=0)  # (top_k, experts)
    return num_experts * (fraction * probs.mean(dim=0)).sum()


class TransformerBlock(nn.Module):
    """Pre-norm decoder block of Llama 3 and Qwen3: RMSNorm -> grouped-query attention -> shortcut,
    RMSNorm -> SwiGLU (or mixture-of-experts) feed-forward -> shortcut. No dropout."""

    def __init__(self, cfg: dict, norm_eps: float):
        super().__init__()
        dtype = cfg.get("dtype")
        self.att = GroupedQueryAttention(cfg["emb_dim"], cfg["n_heads"], cfg["n_kv_groups"], cfg.get("head_dim"),
                                         cfg.get("qk_norm", False), dtype)
        if cfg.get("num_experts", 0) > 0:
            self.ff = MoEFeedForward(cfg["emb_dim"], cfg["moe_intermediate_size"], cfg["num_experts"],
                                     cfg["num_experts_per_tok"], dtype)
        else:
            self.ff = FeedForward(cfg["emb_dim"], cfg["hidden_dim"], dtype)
        self.norm1 = RMSNorm(cfg["emb_dim"], norm_eps, dtype)
        self.norm2 = RMSNorm(cfg["emb_dim"], norm_eps, dtype)

    def forward(self, x, cos, sin, kv_cache=None, layer=0):
        x = x + self.att(self.norm1(x), cos, sin, kv_cache, layer)
        return x + self.ff(self.norm2(x))


def check_modern_config(cfg: dict, model_name: str) -> None:
    """Refuse a chapter 12 config that cannot build a working model, naming the key, value and fix."""
    required = ["vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "n_kv_groups", "rope_base"]
    if cfg.get("num_experts", 0) > 0:
        required += ["num_experts_per_tok", "moe_intermediate_size"]
    else:
        required.append("hidden_dim")
    missing = [key for key in required if key not in cfg]
    if missing:
        raise ValueError(f"the {model_name} config lacks {', '.join(missing)}: start from a published config "
                         f"(e.g. dict(LLAMA32_CONFIG_1B)) and change what you need.")
    for key in required:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{key}={value!r} in the {model_name} config must be a positive number.")
    head_dim = cfg.get("head_dim") or cfg["emb_dim"] // cfg["n_heads"]
    if not cfg.get("head_dim") and cfg["emb_dim"] % cfg["n_heads"]:
        raise ValueError(f"emb_dim={cfg['emb_dim']} is not divisible by n_heads={cfg['n_heads']}: "
                         f"pick another emb_dim, or set head_dim explicitly (Qwen3 does).")
    if head_dim % 2:
        raise ValueError(f"the head dimension {head_dim} is odd: RoPE rotates pairs of dimensions.")
    if cfg["n_heads"] % cfg["n_kv_groups"]:
        raise ValueError(f"n_heads={cfg['n_heads']} is not a multiple of n_kv_groups={cfg['n_kv_groups']}: "
                         f"each key/value group serves the same number of query heads.")
    rope_freq = cfg.get("rope_freq")
    if rope_freq is not None:
        keys = {"factor", "low_freq_factor", "high_freq_factor", "original_context_length"}
        if set(rope_freq) != keys:
            raise ValueError(f"rope_freq={rope_freq!r} needs exactly the keys {sorted(keys)} (or None for plain RoPE).")
        if not rope_freq["high_freq_factor"] > rope_freq["low_freq_factor"] > 0:
            raise ValueError(f"rope_freq needs high_freq_factor > low_freq_factor > 0, got {rope_freq!r}.")


class RoPEDecoder(nn.Module):
    """A decoder-only transformer with rotary positions, RMSNorm and grouped-query attention, built
    from a config dict: the common body of `Llama3Model` and `Qwen3Model`.

    `model(idx)` maps token ids (batch, tokens) to logits (batch, tokens, vocab_size); with a
    `KVCache` it takes only the new tokens, as chapter 4's `GPTModel` does, so chapter 4's and 5's
    generation functions run it unchanged.
    """

    norm_eps = 1e-6
    name = "model"

    def __init__(self, cfg: dict):
        super().__init__()
        check_modern_config(cfg, self.name)
        self.cfg = dict(cfg)
        dtype = cfg.get("dtype")
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"], dtype=dtype)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg, self.norm_eps) for _ in range(cfg["n_layers"]))
        self.final_norm = RMSNorm(cfg["emb_dim"], self.norm_eps, dtype)
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False, dtype=dtype)
        if cfg.get("tie_embeddings", False):
            self.out_head.weight = self.tok_emb.weight  # one matrix reads tokens in and writes them out
        self.rebuild_rope()

    def rebuild_rope(self, device: torch.device | str | None = None) -> None:
        """(Re)compute the RoPE tables, e.g. on the real device after building the model on "meta"."""
        cfg = self.cfg
        head_dim = cfg.get("head_dim") or cfg["emb_dim"] // cfg["n_heads"]
        cos, sin = compute_rope_params(head_dim, cfg["rope_base"], cfg["context_length"], cfg.get("rope_freq"))
        self.register_buffer("cos", cos.to(device), persistent=False)
        self.register_buffer("sin", sin.to(device), persistent=False)

    def forward(self, in_idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        num_tokens = in_idx.shape[1]
        start = 0 if kv_cache is None else kv_cache.length
        if start + num_tokens > self.cfg["context_length"]:
            raise ValueError(f"{start + num_tokens} tokens exceed context_length={self.cfg['context_length']}: "
                             f"crop the input to its last {self.cfg['context_length']} tokens.")
        x = self.tok_emb(in_idx)
        for layer, block in enumerate(self.trf_blocks):
            x = block(x, self.cos, self.sin, kv_cache, layer)
        if kv_cache is not None:
            kv_cache.advance(num_tokens)
        return self.out_head(self.final_norm(x))


# Our parameter names -> the Hugging Face hub's (Llama and Qwen3 safetensors files use the same layout).
HUB_NAMES = [
    (r"^tok_emb\.weight$", "model.embed_tokens.weight"),
    (r"^final_norm\.weight$", "model.norm.weight"),
    (r"^out_head\.weight$", "lm_head.weight"),
    (r"^trf_blocks\.(\d+)\.norm1\.weight$", r"model.layers.\1.input_layernorm.weight"),
    (r"^trf_blocks\.(\d+)\.norm2\.weight$", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"^trf_blocks\.(\d+)\.att\.W_query\.weight$", r"model.layers.\1.self_attn.q_proj.weight"),
    (r"^trf_blocks\.(\d+)\.att\.W_key\.weight$", r"model.layers.\1.self_attn.k_proj.weight"),
    (r"^trf_blocks\.(\d+)\.att\.W_value\.weight$", r"model.layers.\1.self_attn.v_proj.weight"),
    (r"^trf_blocks\.(\d+)\.att\.out_proj\.weight$", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"^trf_blocks\.(\d+)\.att\.q_norm\.weight$", r"model.layers.\1.self_attn.q_norm.weight"),
    (r"^trf_blocks\.(\d+)\.att\.k_norm\.weight$", r"model.layers.\1.self_attn.k_norm.weight"),
    (r"^trf_blocks\.(\d+)\.ff\.fc1\.weight$", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"^trf_blocks\.(\d+)\.ff\.fc2\.weight$", r"model.layers.\1.mlp.up_proj.weight"),
    (r"^trf_blocks\.(\d+)\.ff\.fc3\.weight$", r"model.layers.\1.mlp.down_proj.weight"),
    (r"^trf_blocks\.(\d+)\.ff\.gate\.weight$", r"model.layers.\1.mlp.gate.weight"),
    (r"^trf_blocks\.(\d+)\.ff\.fc1\.(\d+)\.weight$", r"model.layers.\1.mlp.experts.\2.gate_proj.weight"),
    (r"^trf_blocks\.(\d+)\.ff\.fc2\.(\d+)\.weight$", r"model.layers.\1.mlp.experts.\2.up_proj.weight"),
    (r"^trf_blocks\.(\d+)\.ff\.fc3\.(\d+)\.weight$", r"model.layers.\1.mlp.experts.\2.down_proj.weight"),
]


def hub_name(name: str) -> str:
    """The hub's safetensors key for one of our parameter names."""
    for pattern, replacement in HUB_NAMES:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    raise KeyError(f"no hub name for parameter {name}")


def load_hub_weights(model: RoPEDecoder, param_config: dict, params: dict[str, torch.Tensor]) -> None:
    """Copy a hub-layout state dict into `model`, in place, after checking every key and shape.

    The tensors are assigned, not copied, so a model built on the "meta" device never holds two
    copies of the weights; they take the model's dtype. Without `lm_head.weight` the output head
    is tied to the token embedding, as the hub does for models saved with tied weights.
    """
    differing = {key: (param_config.get(key), model.cfg.get(key)) for key in
                 ("vocab_size", "emb_dim", "n_heads", "n_layers", "n_kv_groups", "num_experts")
                 if param_config.get(key) != model.cfg.get(key)}
    if differing:
        raise ValueError(f"param_config does not describe this model: {differing} (param_config, model): "
                         "build the model from the same config the weights were saved with.")
    ours = model.state_dict(keep_vars=True)
    wanted = {name: hub_name(name) for name in ours}
    tie = "lm_head.weight" not in params
    if tie:
        del wanted["out_head.weight"]
    missing = sorted(key for key in wanted.values() if key not in params)
    unexpected = sorted(set(params) - set(wanted.values()))
    if missing or unexpected:
        raise ValueError(f"the weights do not fit this {model.name}: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''} ({len(missing)} and {len(unexpected)} keys). "
                         "Check that the checkpoint and the config are the same model family and size.")
    for name, key in wanted.items():
        if tuple(params[key].shape) != tuple(ours[name].shape):
            raise ValueError(f"{key} has shape {tuple(params[key].shape)} but the model's {name} has "
                             f"{tuple(ours[name].shape)}: the checkpoint and the config differ.")
    state = {name: params[key].to(ours[name].dtype) for name, key in wanted.items()}
    model.load_state_dict(state, strict=False, assign=True)
    if tie:
        model.out_head.weight = model.tok_emb.weight
    device = model.tok_emb.weight.device
    if model.cos.is_meta or model.cos.device != device:
        model.rebuild_rope(device)
