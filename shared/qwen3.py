"""Qwen3 (Alibaba, 2025) as chapter 12 builds it, dense and mixture-of-experts, with the book repository's names.

Qwen3 is Llama 3's layout with two changes: RMSNorm on each query and key head before the rotation
(QK-norm), and a head size set on its own (`head_dim`, 128 in every size). Its MoE models replace
each feed-forward with `num_experts` small ones of which `num_experts_per_tok` run per token.
"""

from __future__ import annotations

import torch

from shared.modern_blocks import RoPEDecoder, load_hub_weights

# Qwen3 0.6B as published (the hub's config.json), in the book repository's keys.
QWEN_CONFIG_06_B = {
    "vocab_size": 151_936,
    "context_length": 40_960,
    "emb_dim": 1024,
    "n_heads": 16,
    "n_layers": 28,
    "hidden_dim": 3072,
    "head_dim": 128,              # not emb_dim / n_heads (= 64)
    "qk_norm": True,
    "n_kv_groups": 8,
    "rope_base": 1_000_000.0,
    "dtype": torch.bfloat16,
    "tie_embeddings": True,
}
QWEN3_CONFIG_1_7B = {**QWEN_CONFIG_06_B, "emb_dim": 2048, "hidden_dim": 6144}
QWEN3_CONFIG_4B = {**QWEN_CONFIG_06_B, "emb_dim": 2560, "n_heads": 32, "n_layers": 36, "hidden_dim": 9728}
QWEN3_CONFIG_8B = {**QWEN_CONFIG_06_B, "emb_dim": 4096, "n_heads": 32, "n_layers": 36, "hidden_dim": 12288,
                   "tie_embeddings": False}
QWEN3_CONFIG_14B = {**QWEN3_CONFIG_8B, "emb_dim": 5120, "n_heads": 40, "n_layers": 40, "hidden_dim": 17408}
QWEN3_CONFIG_32B = {**QWEN3_CONFIG_8B, "emb_dim": 5120, "n_heads": 64, "n_layers": 64, "hidden_dim": 25600}

# Qwen3-30B-A3B: 48 layers of 128 experts, 8 chosen per token (about 3B of the 30B parameters active).
QWEN3_CONFIG_30B_A3B = {
    **{key: value for key, value in QWEN_CONFIG_06_B.items() if key != "hidden_dim"},
    "emb_dim": 2048,
    "n_heads": 32,
    "n_layers": 48,
    "n_kv_groups": 4,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "moe_intermediate_size": 768,
    "tie_embeddings": False,
}

QWEN3_CONFIGS = {"0.6B": QWEN_CONFIG_06_B, "1.7B": QWEN3_CONFIG_1_7B, "4B": QWEN3_CONFIG_4B,
                 "8B": QWEN3_CONFIG_8B, "14B": QWEN3_CONFIG_14B, "32B": QWEN3_CONFIG_32B,
                 "30B-A3B": QWEN3_CONFIG_30B_A3B}


class Qwen3Model(RoPEDecoder):
    """Qwen3 from a config dict like `QWEN_CONFIG_06_B` (dense) or `QWEN3_CONFIG_30B_A3B` (MoE)."""

    norm_eps = 1e-6
    name = "Qwen3Model"


def load_weights_into_qwen(model: Qwen3Model, param_config: dict, params: dict[str, torch.Tensor]) -> None:
    """Load Qwen3 weights in the hub's safetensors layout into `model`, checking every key and shape."""
    load_hub_weights(model, param_config, params)
