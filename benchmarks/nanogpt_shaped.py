"""A GPT in the shape of Andrej Karpathy's nanoGPT, written here as the training-speed yardstick.

nanoGPT is the leanest well-known PyTorch GPT-2: one fused query/key/value projection, PyTorch's
fused attention, the output head tied to the token embedding, the loss computed inside `forward`
(so `torch.compile` sees it), fused AdamW with weight decay on the matrices only, bf16 autocast on
a GPU. This file rebuilds that shape (not its code) so that `bench_train_step.py` can time the
training command against it at the same parameter count, batch and precision, in one run.

Run alone, it trains on random token ids and prints one JSON line:
    python benchmarks/nanogpt_shaped.py --n-layers 12 --emb-dim 768 --n-heads 12 --batch 1 --seq-len 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.devices import memory_in_use_mib, peak_memory_mib, pick_device  # noqa: E402


class Block(nn.Module):
    """Pre-norm attention and MLP, with one (d, 3d) projection for queries, keys and values."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(self.norm1(x)).split(d, dim=2))
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.norm2(x)), approximate="tanh"))


class ReferenceGPT(nn.Module):
    """GPT-2's architecture, head tied, GPT-2's initialisation; `model(idx, targets)` returns the mean loss."""

    def __init__(self, vocab_size: int, context_length: int, width: int, heads: int, layers: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab_size, width), nn.Embedding(context_length, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tok.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for weight in (block.proj.weight, block.down.weight):
                nn.init.normal_(weight, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def optimizer_for(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused where PyTorch has it, weight decay 0.1 on matrices and embeddings only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), fused=device.type in ("cpu", "cuda"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab-size", type=int, default=50_257)
    parser.add_argument("--n-layers", type=int, default=12)
    parser.add_argument("--emb-dim", type=int, default=768)
    parser.add_argument("--n-heads", type=int, default=12)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps, after --warmup untimed ones")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch, args.seq_len) < 1 or args.warmup < 0:
        parser.error("--steps, --batch and --seq-len must be at least 1 and --warmup at least 0.")
    device = pick_device(args.device)
    torch.manual_seed(0)
    before = memory_in_use_mib(device)
    model = ReferenceGPT(args.vocab_size, args.seq_len, args.emb_dim, args.n_heads, args.n_layers).to(device)
    optimizer = optimizer_for(model, device)
    step_fn = torch.compile(model) if args.compile else model
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    ids = torch.randint(0, args.vocab_size, (args.batch, args.seq_len + 1), device=device)
    inputs, targets = ids[:, :-1], ids[:, 1:]

    def step() -> torch.Tensor:
        with autocast:
            loss = step_fn(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    losses = [step() for _ in range(args.steps)]  # no host sync per step
    final_loss = torch.stack(losses)[-1].item()  # waits for the queued work
    seconds = time.perf_counter() - start
    result = {"parameters": sum(p.numel() for p in model.parameters()),
              "tokens_per_s": args.steps * args.batch * args.seq_len / seconds, "warmup_seconds": warmup_seconds,
              "peak_memory_mib": peak_memory_mib(device), "final_loss": final_loss,
              "training_memory_mib": None if before is None else peak_memory_mib(device) - before}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
