"""One door to the architectures the training command trains: GPT-2 (chapter 4), Llama 3 and Qwen3 (chapter 12).

A model's config dict names its architecture under "arch" (absent: GPT-2, as in every checkpoint
written before chapter 12), and whether the output head is the token embedding under
"tie_embeddings" (GPT-2: absent, untied, unless trained with `--tie-weights`), so a checkpoint
rebuilds the right model. `architecture_config` turns
the training command's sizes into each architecture's config, `build_model` builds it and
`init_weights` gives every architecture GPT-2's initialisation.
"""

from __future__ import annotations

import math

import torch.nn as nn

from shared.llama3 import Llama3Model
from shared.modern_blocks import RMSNorm
from shared.qwen3 import Qwen3Model
from shared.transformer import GPTModel, init_gpt2_style

ARCHITECTURES = {"gpt2": GPTModel, "llama3": Llama3Model, "qwen3": Qwen3Model}


def swiglu_hidden_dim(emb_dim: int) -> int:
    """SwiGLU's inner width with the weights of a GELU feed-forward 4x as wide: 8/3 emb_dim, rounded up to 32."""
    return 32 * math.ceil(8 * emb_dim / 3 / 32)


def kv_groups(n_heads: int) -> int:
    """Key/value heads for `n_heads` query heads: the largest divisor of n_heads that is at most half of it
    (1, multi-query attention, when n_heads is 1 or prime)."""
    return max(d for d in range(1, max(1, n_heads // 2) + 1) if n_heads % d == 0)


def architecture_config(arch: str, sizes: dict) -> dict:
    """The config of `arch` at the sizes of a GPTModel config (`vocab_size, context_length, emb_dim, n_heads,
    n_layers`): GPT-2's keys are kept; Llama 3 and Qwen3 get SwiGLU of equal weight, grouped-query attention
    with half as many key/value heads, RoPE and a tied output head, as their small published sizes have."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r} is not one of {', '.join(ARCHITECTURES)}.")
    if arch == "gpt2":
        return dict(sizes)  # no "arch" key: GPT-2 configs stay as every earlier checkpoint wrote them
    cfg = {key: sizes[key] for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers")}
    cfg.update(arch=arch, hidden_dim=swiglu_hidden_dim(sizes["emb_dim"]), n_kv_groups=kv_groups(sizes["n_heads"]),
               rope_base=10_000.0, tie_embeddings=True)
    if arch == "qwen3":
        cfg.update(head_dim=sizes["emb_dim"] // sizes["n_heads"], qk_norm=True)
    return cfg


def build_model(cfg: dict) -> nn.Module:
    """The model a config describes: `cfg["arch"]` picks GPTModel, Llama3Model or Qwen3Model (default GPT-2).

    `cfg["tie_embeddings"]` ties a GPTModel's output head to its token embedding (one matrix, as GPT-2's
    published weights have it, book section 4.6); chapter 12's models read the key themselves."""
    arch = cfg.get("arch", "gpt2")
    if arch not in ARCHITECTURES:
        raise ValueError(f"the config's arch={arch!r} is not one of {', '.join(ARCHITECTURES)}: the checkpoint was "
                         "written by a newer version of this project, or its config was edited.")
    model = ARCHITECTURES[arch](cfg)
    if arch == "gpt2" and cfg.get("tie_embeddings", False):
        model.out_head.weight = model.tok_emb.weight  # one matrix reads tokens in and writes them out
    return model


def init_weights(model: nn.Module) -> None:
    """GPT-2's initialisation for any of the three, in place: N(0, 0.02) weights, RMSNorm gains 1, and the
    projections into the shortcut (attention's `out_proj`, the feed-forward's last layer) scaled by
    1/sqrt(2 * n_layers)."""
    if isinstance(model, GPTModel):
        init_gpt2_style(model)
        return
    std = 0.02
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
    residual_std = std / math.sqrt(2 * model.cfg["n_layers"])
    for block in model.trf_blocks:
        nn.init.normal_(block.att.out_proj.weight, mean=0.0, std=residual_std)
        for down in block.ff.fc3 if isinstance(block.ff.fc3, nn.ModuleList) else [block.ff.fc3]:
            nn.init.normal_(down.weight, mean=0.0, std=residual_std)
