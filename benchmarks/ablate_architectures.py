"""Which of chapter 12's changes helps the training command's small model, and which costs throughput?

`bench_architectures.py` compares GPT-2, Llama 3 and Qwen3 in the 10-minute budget, where a change
can win by learning more per step or by running more steps. This script separates the two:

1. **Quality per step**: each variant trains for the same fixed number of steps (`--steps`, the
   same data, seed, schedule and optimizer), then scores the whole held-out novel in bits per
   byte. A fixed step count makes the result independent of how busy the machine was.
2. **Throughput**: each variant's steady-state training tokens/s, from a short run of its own
   (`--speed-steps`); run this part on an idle machine.

Variants (all at the command's default sizes: 4 layers, 128 wide, 4 heads, context 128):
- `gpt2`: chapter 4's GPTModel, untied head (the command's default);
- `llama3, MHA, untied`: RMSNorm, RoPE and SwiGLU of equal weight, with chapter 4's multi-head
  attention (4 key/value heads) and an untied head: what the three layer changes do together;
- `llama3, MHA`: the same with the head tied to the token embedding;
- `llama3`: the command's `--arch llama3`, tied head and grouped-query attention (2 key/value heads);
- `qwen3`: the command's `--arch qwen3`: `llama3` plus QK-norm.

Run from the repository root (about 8 minutes per variant at 1,500 steps on an idle 2-core CPU):
    python benchmarks/ablate_architectures.py [--steps 1500] [--speed-steps 150] [--only quality|speed]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.trainer import TrainConfig, train  # noqa: E402

VARIANTS = {
    "gpt2": ("gpt2", {}),
    "llama3, MHA, untied": ("llama3", {"n_kv_groups": 4, "tie_embeddings": False}),
    "llama3, MHA": ("llama3", {"n_kv_groups": 4}),
    "llama3": ("llama3", {}),
    "qwen3": ("qwen3", {}),
}


@dataclasses.dataclass
class VariantConfig(TrainConfig):
    """The training command's config with some keys of the model's config replaced."""

    overrides: dict = dataclasses.field(default_factory=dict)

    def model_config(self, vocab_size: int) -> dict:
        return {**super().model_config(vocab_size), **self.overrides}


def run(arch: str, overrides: dict, steps: int, out: Path) -> dict:
    """Train one variant for `steps` steps in `out` (quietly) and return its summary.json."""
    config = VariantConfig(arch=arch, overrides=overrides, max_steps=steps, out=str(out), progress=False,
                           eval_every=10**6, save_every=10**6)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train(config)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each quality run")
    parser.add_argument("--speed-steps", type=int, default=150, help="training steps of each throughput run")
    parser.add_argument("--only", choices=("quality", "speed"), help="run one of the two parts")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    if args.steps < 10 or args.speed_steps < 20:
        parser.error(f"--steps {args.steps} and --speed-steps {args.speed_steps}: use at least 10 and 20 "
                     "(e.g. 1500 and 150).")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            arch, overrides = VARIANTS[name]
            row = rows[name] = {}
            if args.only != "speed":
                s = run(arch, overrides, args.steps, Path(tmp) / f"{len(rows)}-quality")
                row.update(parameters=s["parameters"], bpb=s["val_bits_per_byte"], loss=s["val_loss"])
            if args.only != "quality":
                s = run(arch, overrides, args.speed_steps, Path(tmp) / f"{len(rows)}-speed")
                row.update(parameters=s["parameters"], tokens_per_s=s["tokens_per_s"])
            print(name, json.dumps(row), flush=True)
    print()
    print(f"| variant | parameters | bits/byte after {args.steps:,} steps | tokens/s (steady state) |")
    print("| --- | ---: | ---: | ---: |")
    for name, row in rows.items():
        bpb = f"{row['bpb']:.3f}" if "bpb" in row else "—"
        speed = f"{row['tokens_per_s']:,.0f}" if "tokens_per_s" in row else "—"
        print(f"| {name} | {row['parameters']:,} | {bpb} | {speed} |")


if __name__ == "__main__":
    main()
