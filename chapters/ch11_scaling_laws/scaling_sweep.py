"""Train chapter 11's family of small GPTs and write `scaling_results.csv` beside this file.

Five model sizes (about 13k to 790k non-embedding parameters) are each trained for the same three
token budgets with the project's training function, `train(TrainConfig(...))` (what `python -m
shared.train` runs), on the five training novels; every run is scored on the whole held-out
*Persuasion*. Run it from the repository root:

    python chapters/ch11_scaling_laws/scaling_sweep.py            # two runs at a time, one thread each
    python chapters/ch11_scaling_laws/scaling_sweep.py --jobs 3   # as for the stored CSV: 16 minutes on a
                                                                  # busy 2-core CPU (load 10), less when idle

Each run lives in `runs/scaling/<name>/` (its log in `log.txt`); a run whose `summary.json` exists is
not trained again, so an interrupted sweep continues where it stopped. Runs train in separate worker
processes, each with its own thread count. The CSV is rewritten from the summaries at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from shared.scaling import non_embedding_parameters  # noqa: E402
from shared.trainer import TrainConfig, train  # noqa: E402

CSV_PATH = Path(__file__).resolve().parent / "scaling_results.csv"
RUNS_DIR = ROOT / "runs" / "scaling"

# (n_layers, emb_dim, n_heads): non-embedding parameters grow about 60-fold from first to last.
SIZES = [(1, 32, 2), (2, 48, 2), (3, 64, 4), (4, 96, 4), (4, 128, 4)]
# Optimizer steps of BATCH_SIZE x CONTEXT tokens: every size sees the same 51k, 102k and 205k tokens,
# at most 0.22 passes over the 944,581 training tokens, so no run repeats its data.
STEP_BUDGETS = [50, 100, 200]
BATCH_SIZE = 8
CONTEXT = 128
SEED = 123

COLUMNS = ["run", "n_layers", "emb_dim", "n_heads", "context_length", "steps", "tokens", "parameters",
           "non_embedding_parameters", "flops_per_token", "compute_6nd", "val_loss", "val_bits_per_byte",
           "train_seconds"]


def run_name(n_layers: int, emb_dim: int, steps: int) -> str:
    return f"L{n_layers}-d{emb_dim}-s{steps}"


def run_config(n_layers: int, emb_dim: int, n_heads: int, steps: int, out: Path) -> TrainConfig:
    """One run's settings: AdamW, a warmup of a tenth of the steps, then cosine decay; one evaluation at the end."""
    return TrainConfig(optimizer="adamw", seed=SEED, progress=False, n_layers=n_layers, emb_dim=emb_dim,
                       n_heads=n_heads, context_length=CONTEXT, drop_rate=0.0, batch_size=BATCH_SIZE, max_steps=steps,
                       warmup_steps=max(steps // 10, 1), lr=3e-3, eval_every=steps, save_every=steps, out=str(out))


def train_one(n_layers: int, emb_dim: int, n_heads: int, steps: int, threads: int) -> Path:
    """Train one run unless its summary already exists; return its summary's path. Runs in a worker process."""
    out = RUNS_DIR / run_name(n_layers, emb_dim, steps)
    summary = out / "summary.json"
    if summary.exists():
        print(f"{out.name}: done before, skipped", flush=True)
        return summary
    if out.exists():  # an interrupted run: start it again from scratch
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    with open(out / "log.txt", "w") as log, contextlib.redirect_stdout(log):
        result = train(run_config(n_layers, emb_dim, n_heads, steps, out))
    print(f"{out.name}: held-out loss {result.val_loss:.3f} in {time.perf_counter() - started:.0f} s", flush=True)
    return summary


def row_from_summary(path: Path) -> dict:
    """One CSV row: the run's size, tokens, compute and held-out scores."""
    s = json.loads(path.read_text())
    cfg = s["config"]
    n = non_embedding_parameters(cfg)
    return {"run": path.parent.name, "n_layers": cfg["n_layers"], "emb_dim": cfg["emb_dim"],
            "n_heads": cfg["n_heads"], "context_length": cfg["context_length"], "steps": s["step"],
            "tokens": s["tokens_seen"], "parameters": s["parameters"], "non_embedding_parameters": n,
            "flops_per_token": s["flops_per_token"], "compute_6nd": 6 * n * s["tokens_seen"],
            "val_loss": round(s["val_loss"], 5), "val_bits_per_byte": round(s["val_bits_per_byte"], 5),
            "train_seconds": round(s["train_seconds"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (each on --threads threads)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    args = parser.parse_args()
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be at least 1")
    # Biggest runs first, so the pool does not finish on one long run.
    plan = sorted(((*size, steps) for size in SIZES for steps in STEP_BUDGETS),
                  key=lambda r: -r[1] ** 2 * r[0] * r[3])
    print(f"{len(plan)} runs, {args.jobs} at a time, into {RUNS_DIR}", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(train_one, *zip(*plan), [args.threads] * len(plan)))
    rows = sorted((row_from_summary(p) for p in summaries),
                  key=lambda r: (r["non_embedding_parameters"], r["tokens"]))
    with open(CSV_PATH, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {CSV_PATH} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
