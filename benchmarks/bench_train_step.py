"""The training command's step throughput against a nanoGPT-shaped reference, same shape, side by side.

For each shape, two fresh processes take turns (`--repeats` rounds, the best of each counts):
- the reference, `benchmarks/nanogpt_shaped.py`: nanoGPT's architecture and training step (fused
  query/key/value projection, tied head, loss inside the model, fused AdamW, clipping), on random ids;
- ours, the training command itself: `python -m shared.train --config gpt2` at the shape's sizes, head
  tied (`--tie-weights`, so both have the same parameters), dropout 0, AdamW, on one Austen novel
  with GPT-2's tokenizer, its steady-state tokens/s from summary.json.
Both leave their first 3 steps untimed and report peak memory (CPU: the process's peak resident set;
CUDA: the tensors' peak) and the part of it training needed: the peak minus what the process held
just before the model was built (ours has its text and tokenizer loaded by then).
Shapes: on a CPU, fp32, GPT-2 124M with 1 x 256 tokens and a 4-layer, 256-wide model with 8 x 256
(GPT-2's vocabulary); on CUDA, GPT-2 124M, bf16, compiled, 16 x 1,024.

Run from the repository root (about 8 minutes on a 2-core CPU):
    python benchmarks/bench_train_step.py [--device cpu|cuda] [--steps 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.corpus import load_novel  # noqa: E402

TARGET = 1.0  # ours at least as many tokens/s as the reference
WARMUP = 3  # the training command's WARMUP_STEPS_UNTIMED


@dataclass(frozen=True)
class Shape:
    name: str
    n_layers: int
    emb_dim: int
    n_heads: int
    batch: int
    seq_len: int
    precision: str = "fp32"
    compile: bool = False


SHAPES = {
    "cpu": [Shape("GPT-2 124M, 1 x 256, fp32", 12, 768, 12, 1, 256),
            Shape("4 layers x 256, 8 x 256, fp32", 4, 256, 4, 8, 256)],
    "cuda": [Shape("GPT-2 124M, 16 x 1,024, bf16, compiled", 12, 768, 12, 16, 1024, "bf16", True)],
}


def run_json(command: list[str]) -> dict:
    """Run `command` in a fresh process (its log on stderr) and return the JSON it ends its stdout with."""
    print("$ " + " ".join(command[1:]), file=sys.stderr, flush=True)
    out = subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def reference(shape: Shape, device: str, steps: int) -> dict:
    return run_json([sys.executable, "benchmarks/nanogpt_shaped.py", "--n-layers", str(shape.n_layers),
                     "--emb-dim", str(shape.emb_dim), "--n-heads", str(shape.n_heads), "--batch", str(shape.batch),
                     "--seq-len", str(shape.seq_len), "--steps", str(steps), "--warmup", str(WARMUP),
                     "--device", device, "--precision", shape.precision, *(["--compile"] if shape.compile else [])])


def ours(shape: Shape, device: str, steps: int, text_file: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "shared.train", "--out", str(out), "--no-progress", "--data", str(text_file),
               "--val-fraction", "0.01", "--tokenizer", "gpt2", "--config", "gpt2", "--n-layers", str(shape.n_layers),
               "--emb-dim", str(shape.emb_dim), "--n-heads", str(shape.n_heads), "--context-length",
               str(shape.seq_len), "--drop-rate", "0", "--tie-weights", "--optimizer", "adamw", "--batch-size",
               str(shape.batch), "--max-steps", str(WARMUP + steps), "--eval-every", "1000000", "--save-every",
               "1000000", "--device", device, "--precision", shape.precision,
               *(["--compile"] if shape.compile else [])]
    print("$ " + " ".join(command[1:]), file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=list(SHAPES), default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run, after 3 untimed")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (reference, ours); the best counts")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error(f"--steps {args.steps} and --repeats {args.repeats} must be at least 1.")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but PyTorch sees no CUDA GPU here.")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "emma.txt"
        text_file.write_text(load_novel("emma"), encoding="utf-8")
        for shape in SHAPES[args.device]:
            runs: dict[str, list[dict]] = {"reference": [], "ours": []}
            for i in range(args.repeats):
                runs["reference"].append(reference(shape, args.device, args.steps))
                runs["ours"].append(ours(shape, args.device, args.steps, text_file, Path(tmp) / f"run{len(rows)}-{i}"))
            rows.append((shape, runs))

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"## Training step: the command against a nanoGPT-shaped reference ({device_name})")
    print()
    print(f"- date: {datetime.date.today().isoformat()}; {platform.platform()}; torch {torch.__version__}; "
          f"{args.steps} timed steps per run, best of {args.repeats} runs each, taking turns")
    print()
    print("| shape | parameters (reference / ours) | reference tokens/s | ours tokens/s | ratio | "
          f"peak MiB (reference / ours) | training MiB (reference / ours) | ours at least {TARGET:g}x |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- | --- |")
    for shape, runs in rows:
        ref = max(runs["reference"], key=lambda r: r["tokens_per_s"])
        mine = max(runs["ours"], key=lambda r: r["tokens_per_s"])
        ratio = mine["tokens_per_s"] / ref["tokens_per_s"]
        all_ref = ", ".join(f"{r['tokens_per_s']:,.0f}" for r in runs["reference"])
        all_ours = ", ".join(f"{r['tokens_per_s']:,.0f}" for r in runs["ours"])
        print(f"| {shape.name} | {ref['parameters']:,} / {mine['parameters']:,} | {all_ref} | {all_ours} | "
              f"{ratio:.2f}x | {ref['peak_memory_mib']:,.0f} / {mine['peak_memory_mib']:,.0f} | "
              f"{ref['training_memory_mib']:,.0f} / {mine['training_memory_mib']:,.0f} | "
              f"{'yes' if ratio >= TARGET else 'no'} |")


if __name__ == "__main__":
    main()
