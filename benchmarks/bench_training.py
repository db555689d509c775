"""How good a model does the training command make in its default 10 minutes, and what does the recipe buy?

Runs, each in a fresh process, on the default split (five Austen novels for training, *Persuasion*
held out):

1. `python -m shared.train` with its defaults: appendix D's recipe (warmup, cosine decay, gradient
   clipping) with Muon for the transformer blocks' matrices and AdamW for the rest, the number of
   steps fitted to the time budget.
2. The same command with `--optimizer adamw` (AdamW for every parameter, as in the book), also
   fitted to the time budget: what Muon buys.
3. The AdamW run's model, data, batches and number of steps with the plain loop of chapter 5: one
   learning rate throughout, no warmup, no clipping: what the appendix-D recipe buys.

The yardstick is bits per byte on the held-out novel (nats per token x tokens / bytes / ln 2),
which compares models across tokenizers. Also reported: steady-state tokens/s (summary.json's
`tokens_per_s`: the training steps after each process's first few, whose time, compilation included
with --compile, is `warmup_seconds`, reported apart), and model FLOPs utilisation: (6 x the
parameters that multiply, that is all but the embedding tables, + 12 x layers x context x width)
FLOPs per token times tokens/s, divided by the peak this device reaches on a large fp32 matrix
product, measured here.

Run from the repository root (about 31 minutes at the default budget):
    python benchmarks/bench_training.py [--minutes 10] [--device cpu|cuda] [-- extra shared.train flags]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TARGET_BITS_PER_BYTE = 1.66  # 10% better than nanoGPT's small CPU recipe (1.85) on the same split
REFERENCES = [  # measured by the project's issue on this kind of machine (2 cores, fp32), 10 minutes
    ("nanoGPT's small CPU recipe, GPT-2 tokenizer (4 layers, 4 heads, 128 wide, context 64, batch 12, "
     "lr 1e-3)", 1.85),
    ("nanoGPT's small CPU recipe, character-level", 1.89),
]


def matmul_peak_gflops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """The fp32 GFLOP/s of a large square matrix product: the practical peak MFU is measured against."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def train(out: Path, args: list[str]) -> dict:
    """Run the training command in a fresh process and return its summary.json."""
    command = [sys.executable, "-m", "shared.train", "--out", str(out), "--no-progress", *args]
    print("$ " + " ".join(command[1:]), file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("extra", nargs="*", help="more shared.train flags for both runs (after --)")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = matmul_peak_gflops(device)

    with tempfile.TemporaryDirectory() as tmp:
        common = ["--device", args.device, *args.extra]
        recipe = train(Path(tmp) / "recipe", ["--minutes", str(args.minutes), *common])
        adamw = train(Path(tmp) / "adamw", ["--minutes", str(args.minutes), "--optimizer", "adamw", *common])
        plain = train(Path(tmp) / "plain", ["--max-steps", str(adamw["step"]), "--optimizer", "adamw",
                                            "--schedule", "constant", "--warmup-steps", "0", "--max-norm", "0",
                                            *common])

    def row(name: str, s: dict) -> str:
        gflops = s["flops_per_token"] * s["tokens_per_s"] / 1e9
        ok = "PASS" if s["val_bits_per_byte"] <= TARGET_BITS_PER_BYTE else "FAIL"
        return (f"| {name} | {s['step']:,} | {s['tokens_seen'] / 1e6:.2f}M | {s['wall_seconds'] / 60:.1f} | "
                f"{s['tokens_per_s']:,.0f} | {s.get('warmup_seconds', float('nan')):.1f} | {gflops:.1f} | "
                f"{gflops / peak:.0%} | {s['val_loss']:.3f} | "
                f"{s['val_perplexity']:.1f} | **{s['val_bits_per_byte']:.3f}** | {ok} |")

    cfg, a = recipe["config"], recipe["args"]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"## Training command, {args.minutes:g}-minute budget",
        "",
        f"- date: {datetime.date.today().isoformat()}; {platform.platform()}, {usable} usable CPUs, "
        f"device {device}, torch {torch.__version__}, Python {platform.python_version()}",
        f"- model: {recipe['parameters'] / 1e6:.2f}M parameters: {cfg['n_layers']} layers, {cfg['emb_dim']} wide, "
        f"{cfg['n_heads']} heads, context {cfg['context_length']}, vocabulary {cfg['vocab_size']:,} "
        f"(tokenizer: {a['tokenizer']}), dropout {cfg['drop_rate']}",
        f"- training: batch {a['batch_size']} x {a['accumulation_steps']}, {a['optimizer']} "
        "(Muon for the blocks' matrices, AdamW (0.9, 0.95) for the rest), weight decay "
        f"{a['weight_decay']}, peak lr {a['lr']}"
        + (f" (Muon's matrices {a['muon_lr']})" if a.get("muon_lr") else "")
        + f", {a['warmup_steps']} warmup steps, cosine to {a['min_lr']}, "
        f"clipping at {a['max_norm']}; seed {a['seed']}",
        f"- held out: {recipe['val_tokens']:,} tokens, {recipe['val_bytes']:,} bytes; peak fp32 matrix product "
        f"on this device: {peak:,.0f} GFLOP/s (2048 x 2048), the denominator of MFU",
        "",
        "| run | steps | tokens | wall time (min) | tokens/s (steady) | warm-up (s) | GFLOP/s | MFU | "
        "held-out loss (nats/token) | perplexity | bits/byte | at most " + f"{TARGET_BITS_PER_BYTE} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        row("`python -m shared.train`: Muon + AdamW, warmup, cosine, clipping", recipe),
        row("`--optimizer adamw`: AdamW only, warmup, cosine, clipping", adamw),
        row("AdamW's steps with the plain loop (constant lr, no warmup, no clipping)", plain),
    ]
    lines += [f"| reference: {name} | | | 10 | | | | | | | {bpb} | |" for name, bpb in REFERENCES]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
