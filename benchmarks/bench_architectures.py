"""Chapter 12's architectures against GPT-2's in the training command's default budget.

Runs `python -m shared.train --arch A` for each architecture, each in a fresh process, with
everything else at its default: the same split (five Austen novels for training, *Persuasion* held
out), tokenizer, sizes (4 layers, 128 wide, 4 heads, context 128), optimizer (Muon for the blocks'
matrices, AdamW for the rest), schedule, seed and time budget (the number of steps is fitted to
it, so a slower architecture takes fewer steps). GPT-2 (`gpt2`) is chapter 4's model; `llama3`
swaps in RMSNorm, RoPE, SwiGLU of equal weight, grouped-query attention (2 key/value heads for 4
query heads) and a tied output head; `qwen3` adds QK-norm. A name ending in `-untied` runs that
architecture with `--no-tie-weights` (an output head of its own, as `gpt2` has by default).

Reported per run: parameters, steps, tokens/s, model FLOPs utilisation (against the measured peak
of a large fp32 matrix product) and bits per byte on the held-out novel, the yardstick across
tokenizers and models. The issue's target: the modern architecture at most 1.62 bits per byte.

Run from the repository root (about 42 minutes at the default budget):
    python benchmarks/bench_architectures.py [--minutes 10] [--arch gpt2 llama3 ...] [-- extra flags]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
from pathlib import Path

import torch
from bench_training import matmul_peak_gflops, train

TARGET_BITS_PER_BYTE = 1.62
RUNS = {"gpt2": ["--arch", "gpt2"], "llama3": ["--arch", "llama3"], "qwen3": ["--arch", "qwen3"],
        "llama3-untied": ["--arch", "llama3", "--no-tie-weights"],
        "qwen3-untied": ["--arch", "qwen3", "--no-tie-weights"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--arch", nargs="+", default=["gpt2", "llama3", "qwen3", "llama3-untied"],
                        choices=list(RUNS))
    parser.add_argument("extra", nargs="*", help="more shared.train flags for every run (after --)")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error(f"--minutes {args.minutes} must be positive, e.g. 10.")
    peak = matmul_peak_gflops(torch.device("cpu"))

    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            summaries[arch] = train(Path(tmp) / arch, ["--minutes", str(args.minutes), *RUNS[arch], *args.extra])

    print(f"## Architectures, {args.minutes:g}-minute budget of `python -m shared.train`")
    print()
    print(f"- date: {datetime.date.today().isoformat()}; {platform.platform()}, torch {torch.__version__}; "
          f"peak fp32 matrix product {peak:,.0f} GFLOP/s (the denominator of MFU)")
    print(f"- extra flags: {' '.join(args.extra) or 'none'}")
    print()
    print("| --arch | parameters | steps | tokens/s | FLOPs/token | MFU | held-out loss | bits/byte | "
          f"at most {TARGET_BITS_PER_BYTE} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for arch, s in summaries.items():
        gflops = s["flops_per_token"] * s["tokens_per_s"] / 1e9
        ok = "yes" if s["val_bits_per_byte"] <= TARGET_BITS_PER_BYTE else "no"
        print(f"| {arch} | {s['parameters']:,} | {s['step']:,} | {s['tokens_per_s']:,.0f} | "
              f"{s['flops_per_token'] / 1e6:.2f}M | {gflops / peak:.0%} | {s['val_loss']:.3f} | "
              f"**{s['val_bits_per_byte']:.3f}** | {ok} |")


if __name__ == "__main__":
    main()
