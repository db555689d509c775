"""Train one small GPT with the training command, stopping along the way, and score each stop: the data
behind chapter 10's plot of accuracy against training tokens.

    python chapters/ch10_evaluation/make_checkpoint_scores.py            # train (if needed), then score
    python chapters/ch10_evaluation/make_checkpoint_scores.py --score-only

The run is the shipped Austen GPT's recipe (shared/data/models/README.md: 4 layers, 128 wide, context
128, AdamW, seed 123) with a 1,000-step schedule, of which the first 400 steps are run. `--stop-at`
saves the run at each step in STOPS and exits; `--resume` goes on, so the stops are points along ONE
run (one learning-rate schedule), not separate short runs. Each checkpoint is copied to
runs/ch10/step_<N>.safetensors (runs/ is not shipped).

Each copy, the untrained model (the same recipe's initialisation, seed 123: 0 tokens) and the shipped
model (the same recipe run for 3,000 steps: 6.1M tokens) are then scored on the held-out novel
(*Persuasion*: bits per byte) and on the project's multiple-choice set
(shared/data/multiple_choice/austen-mc.jsonl: accuracy and length-normalised accuracy, split into items
from the training novels and from the held-out one). The result is checkpoint_scores.csv beside this
file, which ch10.ipynb plots. About 5 minutes on an idle 2-core CPU (the stored file took 25 minutes
beside other work); torch 2.13.0, 2026-11-24.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / "runs" / "ch10"
CSV_PATH = Path(__file__).resolve().parent / "checkpoint_scores.csv"
TOTAL_STEPS = 1000
STOPS = (50, 200, 400)  # the steps scored (and where the run pauses)
SHIPPED_STEPS = 3000  # shared/data/models/austen-gpt.safetensors: the same recipe, 3,000 steps
TRAIN_ARGS = ["--optimizer", "adamw", "--tokenizer", "4096", "--context-length", "128", "--emb-dim", "128",
              "--n-heads", "4", "--n-layers", "4", "--drop-rate", "0.0", "--batch-size", "16", "--lr", "3e-3",
              "--min-lr", "1e-4", "--warmup-steps", "100", "--weight-decay", "0.1", "--max-norm", "1.0",
              "--max-steps", str(TOTAL_STEPS), "--seed", "123", "--eval-every", "100", "--no-progress"]


def checkpoint_copy(step: int) -> Path:
    return RUN_DIR / f"step_{step}.safetensors"


def train() -> None:
    """Run the training command to each stop in turn, copying the checkpoint saved there."""
    out = RUN_DIR / "run"
    for stop in STOPS:
        if checkpoint_copy(stop).exists():
            continue
        command = [sys.executable, "-m", "shared.train", *TRAIN_ARGS, "--out", str(out)]
        if (out / "checkpoint.safetensors").exists():
            command.append("--resume")
        command += ["--stop-at", str(stop)]
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        shutil.copy(out / "checkpoint.safetensors", checkpoint_copy(stop))


def score() -> None:
    """Score the untrained model and every copied checkpoint; write checkpoint_scores.csv."""
    import torch

    from shared.corpus import load_novel
    from shared.evaluation import evaluate_text, score_multiple_choice
    from shared.multiple_choice import load_austen_multiple_choice
    from shared.pretrained import load_austen_gpt, load_trained_model
    from shared.transformer import GPTModel, init_gpt2_style

    items = load_austen_multiple_choice()
    held_out_text = load_novel("persuasion")
    rows = []
    for step in (0, *STOPS, SHIPPED_STEPS):
        if step == 0:  # the recipe's initial weights, before any training step
            model, tokenizer = load_trained_model(str(checkpoint_copy(STOPS[0])), "cpu")
            torch.manual_seed(123)
            model = GPTModel(model.cfg)
            init_gpt2_style(model)
        elif step == SHIPPED_STEPS:
            model, tokenizer = load_austen_gpt()
        else:
            model, tokenizer = load_trained_model(str(checkpoint_copy(step)), "cpu")
        tokens = step * 16 * 128
        bpb = evaluate_text(model, held_out_text, tokenizer, "cpu", batch_size=32).bits_per_byte
        row = {"model": "shipped" if step == SHIPPED_STEPS else "run", "step": step, "tokens": tokens,
               "heldout_bits_per_byte": round(bpb, 4)}
        for split in ("train", "heldout"):
            result = score_multiple_choice(model, tokenizer, [i for i in items if i.split == split], batch_size=64)
            row[f"acc_{split}"] = round(result.accuracy, 4)
            row[f"acc_norm_{split}"] = round(result.accuracy_norm, 4)
        print(row, flush=True)
        rows.append(row)
    with CSV_PATH.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {CSV_PATH}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-only", action="store_true", help="score the checkpoints already in runs/ch10")
    args = parser.parse_args()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if not args.score_only:
        train()
    score()


if __name__ == "__main__":
    main()
