"""Pretrain your own GPT: `python -m shared.train` (the Austen novels) or `python -m shared.train --data my_texts/`.

The command parses its flags into a `TrainConfig` and calls `train` (both in `shared/trainer.py`,
which a notebook can call directly): it tokenizes and packs the text, holds out a validation split
(by default a whole novel, *Persuasion*, that the model never sees), trains with appendix D's loop
(warmup, cosine decay, clipping; gradient accumulation and bf16 on request), shows progress, writes
a checkpoint it can resume from (also on Ctrl-C), reports held-out perplexity and bits per byte, and
prints a sample. Speeds are steady-state tokens/s: each process's first few steps (with --compile, the
compilation) are reported apart, as warm-up seconds (summary.json: `tokens_per_s`, `warmup_seconds`).
`python -m shared.chat CHECKPOINT` then talks to the model. `--help` lists every option.

Across processes: `torchrun --nproc_per_node=N -m shared.train [--distributed ddp|fsdp] ...` (see
`shared/distributed.py`). Each process draws its own batches, so the global batch is N x
--batch-size x --accumulation-steps; rank 0 alone prints and writes checkpoints, which a single
process can load and resume.
"""

from __future__ import annotations

import argparse
import signal
import sys

from shared import distributed
from shared.interrupts import Interrupted
from shared.optimizers import OPTIMIZERS
from shared.trainer import DEFAULT_PROMPT, PRECISIONS, RECIPES, SCHEDULES, TrainConfig, TrainingDiverged, train
from shared.transformer import GPT2_CONFIGS


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None ("not set"), which the help text explains where it matters."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):  # on/off flags explain themselves
            return action.help
        return super()._get_help_string(action)


def _recipe_help(name: str) -> str:
    return "; ".join(f"{recipe[name]:g} with {opt}" for opt, recipe in RECIPES.items() if name in recipe)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The command line as a checked TrainConfig (exits with a message naming the flag if a value is wrong)."""
    p = argparse.ArgumentParser(prog="python -m shared.train", description=__doc__.split("\n\n")[0],
                                formatter_class=_HelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", nargs="*", help="text files or folders of .txt files, or one token file written by "
                   "shared.token_file (chapter 9), read without loading it (default: the shipped Austen novels)")
    g.add_argument("--val-novel", default="persuasion", help="with the Austen default: the novel held out")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="with --data: the end of each file (or of the token file) held out")
    g.add_argument("--tokenizer", default="4096", help="'gpt2', or a vocabulary size to learn a BPE tokenizer")
    g = p.add_argument_group("model")
    g.add_argument("--arch", default="gpt2", choices=("gpt2", "llama3", "qwen3"),
                   help="gpt2: the book's GPTModel (chapter 4); llama3, qwen3: chapter 12's architectures at the same "
                   "sizes (RMSNorm, RoPE, SwiGLU, grouped-query attention, tied head; qwen3 adds QK-norm)")
    g.add_argument("--config", dest="gpt2_size", metavar="SIZE",
                   help=f"start from a GPT-2 size: {', '.join(GPT2_CONFIGS)} (default: a small model)")
    g.add_argument("--n-layers", type=int)
    g.add_argument("--emb-dim", type=int)
    g.add_argument("--n-heads", type=int)
    g.add_argument("--context-length", type=int)
    g.add_argument("--drop-rate", type=float)
    g.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="the output head reuses the token embedding matrix, as GPT-2's published weights do (book "
                   "section 4.6; fewer parameters; checkpoints store the matrix once). Default: gpt2 unties (the "
                   "book's GPTModel), llama3 and qwen3 tie (as their small published sizes); --no-tie-weights unties")
    g = p.add_argument_group("training")
    g.add_argument("--out", default="runs/austen", help="folder for the checkpoint and the log")
    g.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    g.add_argument("--minutes", type=float, default=10.0,
                   help="time budget for the whole run, final scoring included: the number of steps is planned from "
                   "a few timed steps, then re-fitted to the recent pace every 1/40 of the budget until 90%% of it "
                   "has passed (each re-fit changes the slope of the cosine decay from there on, never the current "
                   "learning rate), so the run ends close to the budget whether the machine speeds up or slows "
                   "down; --resume goes on with the saved plan and what is left of the budget")
    g.add_argument("--max-steps", type=int, help="train exactly this many optimizer steps (overrides --minutes)")
    g.add_argument("--stop-at", type=int, help="save and exit after this step (continue later with --resume)")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--accumulation-steps", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--optimizer", default="muon", choices=OPTIMIZERS,
                   help="muon: Muon for the blocks' matrices, AdamW for the rest; adamw: AdamW throughout (the book)")
    g.add_argument("--lr", type=float, help="peak learning rate (with muon: of the embeddings, head and norms) "
                   "(default: " + _recipe_help("lr") + ")")
    g.add_argument("--muon-lr", type=float,
                   help=f"with --optimizer muon: peak learning rate of the blocks' matrices "
                   f"(default: {RECIPES['muon']['muon_lr']:g})")
    g.add_argument("--min-lr", type=float, default=1e-4)
    g.add_argument("--warmup-steps", type=int, help="(default: " + _recipe_help("warmup_steps") + ")")
    g.add_argument("--weight-decay", type=float, help="(default: " + _recipe_help("weight_decay") + ")")
    g.add_argument("--schedule", default="cosine", choices=SCHEDULES,
                   help="cosine: warmup then cosine decay (appendix D); constant: --lr throughout (chapter 5)")
    g.add_argument("--max-norm", type=float, default=1.0, help="clip the gradient norm to this (0: no clipping)")
    g.add_argument("--eval-every", type=int, default=200, help="steps between validation checks")
    g.add_argument("--eval-windows", type=int, default=64, help="validation windows per check")
    g.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    g.add_argument("--seed", type=int, default=123)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    g.add_argument("--precision", default="auto", choices=PRECISIONS)
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the model together with its loss (GPUs; slow to start: the compilation is "
                   "reported as warm-up time, apart from the steady-state tokens/s)")
    g.add_argument("--prompt", default=DEFAULT_PROMPT, help="the start of the samples printed")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (for logs)")
    g = p.add_argument_group("across processes (launch with torchrun --nproc_per_node=N -m shared.train ...)")
    g.add_argument("--distributed", choices=distributed.STRATEGIES,
                   help="ddp: a full copy per process, gradients averaged; fsdp: parameters, gradients and optimizer "
                        "state sharded (default under torchrun with more than one process: ddp)")
    g.add_argument("--dist-timeout", type=float, default=300.0,
                   help="seconds a process waits for the others before the run fails with an error")
    args = p.parse_args(argv)
    try:
        return TrainConfig(**vars(args))
    except ValueError as err:  # every setting is checked in one place, TrainConfig
        p.error(str(err))



def main(argv: list[str] | None = None) -> None:
    """Parse, train, report: the whole command."""
    config = parse_args(argv)
    try:
        result = train(config)
    except Interrupted as stop:  # the trainer saved the run and said how to continue it
        for signum in (signal.SIGINT, signal.SIGTERM):  # a late second signal cannot change how the run ends
            signal.signal(signum, signal.SIG_IGN)
        raise SystemExit(stop.exit_code) from None
    except TrainingDiverged as err:  # nothing saved over the last good checkpoint
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except (ValueError, OSError) as err:  # bad data or settings, a busy, unwritable or full --out
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if result.sample is not None and distributed.rank() == 0:
        print("\nsample:\n" + result.sample)
    distributed.shutdown()  # wait for every process, then leave the group (nothing to do in one process)


if __name__ == "__main__":
    main()
