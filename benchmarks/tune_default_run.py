"""How the training command's Muon defaults were chosen: many short runs of the default model at once.

Every run trains the default model on the default split for exactly the default CPU run's number
of steps (2,730, what 10 minutes buy on the project's 2-core machine) and scores the whole held-out
novel in bits per byte. On a GPU the runs take about three minutes each, twelve at a time, so the
three rounds below (60 runs) fit in about 20 minutes; on the CPU each run takes 10. The step count,
not the time, is fixed, so the results carry over to the CPU run (checked: the old defaults gave
1.670 bits/byte both on the H100 and on the CPU). Each round's flags were picked from the one
before; the flags are relative to the defaults before tuning (`BEFORE`), which every run states.

Run from the repository root; it writes one CSV row per finished run:
    python benchmarks/tune_default_run.py --device cuda [--workers 12] [--rounds 1 2 3] [--out results.csv]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2730
# The Muon run's defaults before tuning: one peak learning rate for both optimizers.
BEFORE = ["--optimizer", "muon", "--lr", "3e-3", "--muon-lr", "3e-3", "--weight-decay", "0.1",
          "--warmup-steps", "100"]


def _runs(prefix: str, flags: str, seeds: tuple[int, ...] = (123,)) -> list[tuple[str, str]]:
    return [(f"{prefix}_s{seed}", f"{flags} --seed {seed}".strip()) for seed in seeds]


# Round 1: Muon's own learning rate, and one change at a time at Muon lr 5e-3.
ROUND_1 = [
    *_runs("before", "", (123, 7)),
    *_runs("muon5e-3", "--muon-lr 5e-3", (123, 7)), *_runs("muon7e-3", "--muon-lr 7e-3", (123, 7)),
    *_runs("muon1e-2", "--muon-lr 1e-2", (123, 7)), *_runs("muon1.5e-2", "--muon-lr 1.5e-2"),
    *_runs("both4e-3", "--lr 4e-3 --muon-lr 4e-3"), *_runs("both5e-3", "--lr 5e-3 --muon-lr 5e-3"),
    *_runs("muon7e-3_lr2e-3", "--muon-lr 7e-3 --lr 2e-3"), *_runs("muon7e-3_lr4e-3", "--muon-lr 7e-3 --lr 4e-3"),
    *_runs("muon5e-3_minlr0", "--muon-lr 5e-3 --min-lr 0"),
    *_runs("muon5e-3_wd0.05", "--muon-lr 5e-3 --weight-decay 0.05"),
    *_runs("muon5e-3_wd0.2", "--muon-lr 5e-3 --weight-decay 0.2"),
    *_runs("muon5e-3_warmup50", "--muon-lr 5e-3 --warmup-steps 50"),
    *_runs("muon5e-3_warmup300", "--muon-lr 5e-3 --warmup-steps 300"),
    *_runs("muon5e-3_noclip", "--muon-lr 5e-3 --max-norm 0"),
    *_runs("muon5e-3_clip0.5", "--muon-lr 5e-3 --max-norm 0.5"),
    *_runs("muon5e-3_batch32", "--muon-lr 5e-3 --batch-size 32 --max-steps 1365"),
    *_runs("muon5e-3_ctx256", "--muon-lr 5e-3 --context-length 256 --batch-size 8"),
    *_runs("muon5e-3_heads8", "--muon-lr 5e-3 --n-heads 8"), *_runs("muon5e-3_heads2", "--muon-lr 5e-3 --n-heads 2"),
]
# Round 2: around Muon lr 1.5e-2, and the round's best changes together (A).
A = "--muon-lr 1.5e-2 --lr 2e-3 --weight-decay 0.2 --warmup-steps 50 --n-heads 2"
ROUND_2 = [
    *_runs("muon1.5e-2", "--muon-lr 1.5e-2", (7, 11)), *_runs("muon2e-2", "--muon-lr 2e-2", (123, 7)),
    *_runs("muon3e-2", "--muon-lr 3e-2"),
    *_runs("muon1.5e-2_lr1e-3", "--muon-lr 1.5e-2 --lr 1e-3"),
    *_runs("muon1.5e-2_lr2e-3", "--muon-lr 1.5e-2 --lr 2e-3"),
    *_runs("muon1.5e-2_wd0.2", "--muon-lr 1.5e-2 --weight-decay 0.2"),
    *_runs("muon1.5e-2_wd0.4", "--muon-lr 1.5e-2 --weight-decay 0.4"),
    *_runs("muon1.5e-2_lr2e-3_wd0.3", "--muon-lr 1.5e-2 --lr 2e-3 --weight-decay 0.3"),
    *_runs("muon1.5e-2_noclip", "--muon-lr 1.5e-2 --max-norm 0"),
    *_runs("muon1.5e-2_warmup50", "--muon-lr 1.5e-2 --warmup-steps 50"),
    *_runs("muon1.5e-2_heads2", "--muon-lr 1.5e-2 --n-heads 2"),
    *_runs("muon1.5e-2_heads1", "--muon-lr 1.5e-2 --n-heads 1"),
    *_runs("muon1.5e-2_batch32", "--muon-lr 1.5e-2 --batch-size 32 --max-steps 1365"),
    *_runs("A", A, (123, 7, 11)), *_runs("A_noclip", A + " --max-norm 0"), *_runs("A_minlr0", A + " --min-lr 0"),
    *_runs("A_batch32", A + " --batch-size 32 --max-steps 1365"),
    *_runs("A_ctx256", A + " --context-length 256 --batch-size 8"),
    *_runs("A_muon1e-2", A + " --muon-lr 1e-2"), *_runs("A_muon2e-2", A + " --muon-lr 2e-2"),
]
# Round 3: the finalists, three seeds each (the seed changes the initial weights and the batches).
C = "--muon-lr 1e-2 --lr 2e-3 --warmup-steps 50"
ROUND_3 = [
    *_runs("C_wd0.2", C + " --weight-decay 0.2", (123, 7, 11)),
    *_runs("C_wd0.3", C + " --weight-decay 0.3", (123, 7, 11)),  # chosen: the new defaults
    *_runs("C_muon1.5e-2_wd0.3", C + " --weight-decay 0.3 --muon-lr 1.5e-2", (123, 7, 11)),
    *_runs("C_wd0.2_heads2", C + " --weight-decay 0.2 --n-heads 2", (7, 11)),
    *_runs("C_wd0.2_noclip", C + " --weight-decay 0.2 --max-norm 0"),
]
ROUNDS = {1: ROUND_1, 2: ROUND_2, 3: ROUND_3}
FIELDS = ["round", "name", "flags", "steps", "val_loss", "val_bits_per_byte", "device", "date"]


def train(name: str, flags: str, device: str, folder: Path) -> dict:
    """One run in a fresh process (one CPU thread: many run at once); its summary.json."""
    out = folder / name
    command = [sys.executable, "-m", "shared.train", "--out", str(out), "--no-progress", "--device", device,
               "--precision", "fp32", "--eval-every", "500", "--save-every", "100000", "--max-steps", str(STEPS),
               *BEFORE, *flags.split()]  # later flags override earlier ones
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=12, help="runs at a time")
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 2, 3], choices=sorted(ROUNDS))
    parser.add_argument("--out", type=Path, default=Path("tuning_results.csv"))
    args = parser.parse_args()
    jobs = [(r, name, flags) for r in args.rounds for name, flags in ROUNDS[r]]
    today = datetime.date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp, open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()

        def one(job: tuple[int, str, str]) -> None:
            r, name, flags = job
            s = train(f"r{r}_{name}", flags, args.device, Path(tmp))
            writer.writerow({"round": r, "name": name, "flags": flags, "steps": s["step"],
                             "val_loss": f"{s['val_loss']:.4f}", "val_bits_per_byte": f"{s['val_bits_per_byte']:.4f}",
                             "device": args.device, "date": today})
            f.flush()
            print(f"round {r} {name:28s} {s['val_bits_per_byte']:.4f} bits/byte", flush=True)

        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(one, jobs))


if __name__ == "__main__":
    main()
