"""Llama 3 (Meta, 2024) as chapter 12 builds it from chapter 4's GPT, with the book repository's names.

Against `GPTModel`: RMSNorm instead of LayerNorm, rotary positions (with Llama 3's frequency
scaling for long contexts) instead of a learned position embedding, a SwiGLU feed-forward, grouped-
query attention, no biases and no dropout. The blocks live in `shared/modern_blocks.py`.
"""

from __future__ import annotations

import torch

from shared.modern_blocks import RoPEDecoder, load_hub_weights

# Llama 3.2 1B and 3B as published (the hub's config.json), in the book repository's keys.
LLAMA32_CONFIG_1B = {
    "vocab_size": 128_256,        # Llama 3's tiktoken vocabulary
    "context_length": 131_072,    # 128k tokens, reached by scaling RoPE's frequencies (rope_freq)
    "emb_dim": 2048,
    "n_heads": 32,
    "n_layers": 16,
    "hidden_dim": 8192,           # SwiGLU's inner width
    "n_kv_groups": 8,             # 32 query heads share 8 key/value heads
    "rope_base": 500_000.0,
    "dtype": torch.bfloat16,
    "rope_freq": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_context_length": 8192},
    "tie_embeddings": True,       # the output head reuses the token embedding
}

LLAMA32_CONFIG_3B = {**LLAMA32_CONFIG_1B, "emb_dim": 3072, "n_heads": 24, "n_layers": 28}


class Llama3Model(RoPEDecoder):
    """Llama 3 from a config dict like `LLAMA32_CONFIG_1B`; `model(idx)` returns logits."""

    norm_eps = 1e-5
    name = "Llama3Model"

    def __init__(self, cfg: dict):
        for key in ("qk_norm", "num_experts", "head_dim"):
            if cfg.get(key):
                raise ValueError(f"{key}={cfg[key]!r}: Llama 3 has no {key}; Qwen3Model (shared/qwen3.py) has.")
        super().__init__(cfg)


def load_weights_into_llama(model: Llama3Model, param_config: dict, params: dict[str, torch.Tensor]) -> None:
    """Load Llama 3 weights in the hub's safetensors layout into `model`, checking every key and shape."""
    load_hub_weights(model, param_config, params)
