"""Pretraining as a function: `train(TrainConfig(...))` runs appendix D's loop on a corpus and returns a `TrainResult`.

`TrainConfig` holds every setting of a run (each one a flag of `python -m shared.train`, which only
parses its arguments into a `TrainConfig` and calls `train`); the optimizers' tuned defaults fill in
what is left unset, and every value is checked when the config is made. `train` tokenizes and packs
the text, holds out a validation split (by default a whole novel, *Persuasion*), trains with
warmup, cosine decay and clipping (gradient accumulation and bf16 on request), writes a checkpoint
it can resume from exactly (also on Ctrl-C), and scores the held-out text in bits per byte:

    from shared.trainer import TrainConfig, train
    result = train(TrainConfig(n_layers=2, emb_dim=64, n_heads=2, max_steps=100, out="runs/tiny"))
    result.val_loss, result.history[-1], result.checkpoint

Across processes (`torchrun`) each process draws its own batches, so the global batch is N x
batch_size x accumulation_steps; rank 0 alone prints and writes checkpoints (`shared/distributed.py`).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from shared import distributed
from shared.architectures import ARCHITECTURES, architecture_config, build_model, init_weights
from shared.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from shared.corpus import NOVELS, Corpus, build_corpus
from shared.dataloader import join_documents
from shared.devices import pick_device
from shared.evaluation import bits_per_byte, evaluate_text, loss_over_token_ids
from shared.files import atomic_write_text
from shared.interrupts import NAMES, Interrupted, StopRequests
from shared.optimizers import OPTIMIZERS, make_optimizer
from shared.pretraining import autocast, generate, lr_at_step, resolve_precision, text_to_token_ids, token_ids_to_text
from shared.pretraining import train_step as optimizer_step
from shared.run_folder import RunLock, check_room, remove_orphan_temp_files
from shared.scaling import flops_per_token
from shared.token_file import (
    TokenFile,
    held_out_documents,
    open_token_file,
    sample_batch,
    sidecar_path,
    split_token_file,
)
from shared.tokenization import Tokenizer, build_tokenizer, describe_tokenizer, tokenizer_from_description
from shared.transformer import GPT2_CONFIGS

CHECKPOINT_NAME = "checkpoint.safetensors"
DEFAULT_PROMPT = "It is a truth universally acknowledged"
# The default model: small and fast. In a 10-minute CPU budget, more steps beat a bigger model (benchmarks/).
SMALL_MODEL = {"context_length": 128, "emb_dim": 128, "n_heads": 4, "n_layers": 4, "drop_rate": 0.0,
               "qkv_bias": False}

# Each optimizer's defaults, tuned on the default model and split at the default run's length
# (benchmarks/README.md, "Tuning the default run"). Muon takes larger steps than AdamW and wants
# more weight decay; the AdamW part of the muon recipe (embeddings, head, norms) a smaller rate.
RECIPES = {
    "muon": {"lr": 2e-3, "muon_lr": 1e-2, "weight_decay": 0.3, "warmup_steps": 50},
    "adamw": {"lr": 3e-3, "weight_decay": 0.1, "warmup_steps": 100},
}
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
# The settings that define what a run trains: resuming with any of them changed would train something else.
RUN_IDENTITY = ("data", "val_novel", "val_fraction", "tokenizer", "arch", "gpt2_size", "n_layers", "emb_dim", "n_heads",
                "context_length", "seed", "batch_size", "accumulation_steps", "schedule", "optimizer")


def flag(name: str) -> str:
    """A config field as the command-line flag that sets it: 'batch_size' -> '--batch-size'."""
    return "--" + {"gpt2_size": "config"}.get(name, name).replace("_", "-")


@dataclass
class TrainConfig:
    """Every setting of a training run; `python -m shared.train --help` explains each (fields are its flags).

    Left as None, `lr`, `muon_lr`, `weight_decay` and `warmup_steps` take the optimizer's tuned
    values (`RECIPES`); the model's sizes take GPT-2's (`gpt2_size`) or the small default's. An
    invalid value raises a ValueError that names the setting, the value and a fix.
    """

    # data
    data: list[str] | None = None  # .txt files or folders, or one token file; None: the Austen novels
    val_novel: str = "persuasion"  # with the Austen novels: the one held out
    val_fraction: float = 0.1  # with `data`: the end of each file held out
    tokenizer: str = "4096"  # "gpt2", or the vocabulary size of a BPE learned from the training text
    # model
    arch: str = "gpt2"  # "gpt2" (chapter 4), "llama3" or "qwen3" (chapter 12)
    gpt2_size: str | None = None  # start from a GPT-2 size ("gpt2", "gpt2-medium", ...); None: a small model
    n_layers: int | None = None
    emb_dim: int | None = None
    n_heads: int | None = None
    context_length: int | None = None
    drop_rate: float | None = None
    # training
    out: str = "runs/austen"  # folder for the checkpoint and summary.json
    resume: bool = False  # continue the run saved in `out`
    minutes: float = 10.0  # time budget, unless max_steps is set
    max_steps: int | None = None
    stop_at: int | None = None  # save and return after this step (continue with resume=True)
    batch_size: int = 16
    accumulation_steps: int = 1
    optimizer: str = "muon"
    lr: float | None = None
    muon_lr: float | None = None
    min_lr: float = 1e-4
    warmup_steps: int | None = None
    weight_decay: float | None = None
    schedule: str = "cosine"
    max_norm: float = 1.0  # 0: no clipping
    eval_every: int = 200
    eval_windows: int = 64
    save_every: int = 500
    seed: int = 123
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    prompt: str = DEFAULT_PROMPT
    progress: bool = True
    # across processes
    distributed: str | None = None  # "ddp" or "fsdp"; None: one process (ddp under a multi-process torchrun)
    dist_timeout: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.data, str | Path):
            self.data = [self.data]
        if self.data is not None:
            self.data = [str(d) for d in self.data] or None
        self.out = str(self.out)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.muon_lr is not None and (self.optimizer != "muon" or self.muon_lr <= 0):
            raise ValueError(f"muon_lr={self.muon_lr} ({flag('muon_lr')}) sets Muon's peak learning rate: it needs "
                             "optimizer 'muon' (--optimizer muon) and a positive value, e.g. 1e-2.")
        for name, value in RECIPES[self.optimizer].items():  # the optimizer's tuned values, where none was set
            if getattr(self, name) is None:
                setattr(self, name, value)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("arch", self.arch, tuple(ARCHITECTURES))
        if self.gpt2_size is not None:
            _check_choice("gpt2_size", self.gpt2_size, tuple(GPT2_CONFIGS))
        if self.arch != "gpt2" and (self.gpt2_size is not None or self.drop_rate is not None):
            raise ValueError(f"arch={self.arch!r} ({flag('arch')}) has no GPT-2 sizes and no dropout: leave out "
                             f"{flag('gpt2_size')} and {flag('drop_rate')}, and set sizes with --n-layers, --emb-dim, "
                             "--n-heads and --context-length.")
        if self.val_novel not in NOVELS:  # used only without `data`, but a wrong name is a mistake either way
            raise ValueError(f"val_novel={self.val_novel!r} ({flag('val_novel')}) is not one of the shipped novels: "
                             f"{', '.join(NOVELS)}.")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction} ({flag('val_fraction')}) must be between 0 and 1, "
                             "e.g. 0.1.")
        for name in ("batch_size", "accumulation_steps", "eval_every", "eval_windows", "save_every", "n_layers",
                     "emb_dim", "n_heads", "context_length", "max_steps", "stop_at"):
            _check_at_least(name, getattr(self, name), 1)
        _check_at_least("warmup_steps", self.warmup_steps, 0)
        for name in ("lr", "minutes", "dist_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} ({flag(name)}) must be positive.")
        for name in ("min_lr", "weight_decay", "max_norm"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)} ({flag(name)}) must be 0 or more.")
        if self.tokenizer != "gpt2" and not (self.tokenizer.isdigit() and int(self.tokenizer) >= 257):
            raise ValueError(f"tokenizer={self.tokenizer!r} ({flag('tokenizer')}): use 'gpt2', or a vocabulary size of "
                             "at least 257 (256 byte tokens and <|endoftext|>), e.g. 4096.")
        if not self.prompt:
            raise ValueError(f"prompt={self.prompt!r} ({flag('prompt')}) is empty: the sample needs a start, e.g. "
                             f"{DEFAULT_PROMPT!r}.")
        if self.drop_rate is not None and not 0 <= self.drop_rate < 1:
            raise ValueError(f"drop_rate={self.drop_rate} ({flag('drop_rate')}) must be in [0, 1), e.g. 0.1.")
        self._check_distributed()

    def _check_distributed(self) -> None:
        """ddp by default under a multi-process torchrun launch; a strategy needs one; FSDP cannot shard Muon."""
        if self.distributed is None and distributed.launched_by_torchrun() and distributed.world_size() > 1:
            self.distributed = "ddp"
        if self.distributed is None:
            return
        _check_choice("distributed", self.distributed, distributed.STRATEGIES)
        if not distributed.launched_by_torchrun():
            raise ValueError(f"distributed={self.distributed!r} needs several processes: launch with "
                             f"`torchrun --nproc_per_node=2 -m shared.train --distributed {self.distributed} ...`.")
        if self.distributed == "fsdp" and self.optimizer == "muon":
            # Under FSDP each process holds a slice of every matrix; Muon would orthogonalise the slices.
            raise ValueError("distributed 'fsdp' with optimizer 'muon' would orthogonalise each process's shard of a "
                             "matrix instead of the whole matrix: use --optimizer adamw with fsdp, or --distributed "
                             "ddp.")

    def model_config(self, vocab_size: int) -> dict:
        """The model's config: a GPT-2 size (`gpt2_size`) or the small default, with any sizes set here, in the
        keys of the architecture (`arch`)."""
        cfg = dict(GPT2_CONFIGS[self.gpt2_size]) if self.gpt2_size else dict(SMALL_MODEL)
        for key in ("context_length", "emb_dim", "n_heads", "n_layers", "drop_rate"):
            if getattr(self, key) is not None:
                cfg[key] = getattr(self, key)
        cfg["vocab_size"] = vocab_size
        return architecture_config(self.arch, cfg)

    def changes_from(self, saved: dict) -> list[str]:
        """'--flag: saved X, now Y' for each setting of `RUN_IDENTITY` on which this config and a saved one differ.

        `saved` is what a checkpoint stored (`asdict` of the config it was trained with); runs saved
        before these names existed called `gpt2_size` "config" and always used AdamW.
        """
        saved = {"optimizer": "adamw", "arch": "gpt2", **saved}
        if "gpt2_size" not in saved and "config" in saved:
            saved["gpt2_size"] = saved["config"]
        return [f"{flag(k)}: saved {saved.get(k)!r}, now {getattr(self, k)!r}"
                for k in RUN_IDENTITY if saved.get(k) != getattr(self, k)]


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} ({flag(name)}) is not one of: {', '.join(map(str, choices))}.")


def _check_at_least(name: str, value, minimum: int) -> None:
    if value is not None and (not isinstance(value, int) or value < minimum):
        raise ValueError(f"{name}={value!r} ({flag(name)}) must be a whole number, at least {minimum}.")


@dataclass
class TrainResult:
    """What a run did: its evaluations along the way, its held-out scores and where its checkpoint is.

    `history` has one entry per evaluation (step, tokens, train_loss, val_loss, tokens_per_s,
    gflops_per_s). The held-out scores cover the whole validation text and are None when the run
    stopped early (`stop_at`) or on a process that does not evaluate. `summary` is what
    `summary.json` holds.
    """

    checkpoint: Path
    step: int
    total_steps: int
    history: list[dict]
    tokens_seen: int
    train_seconds: float
    parameters: int
    config: dict
    val_loss: float | None = None
    val_perplexity: float | None = None
    val_bits_per_byte: float | None = None
    sample: str | None = None
    summary: dict = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        """True when the run trained all its steps (False after `stop_at`: resume it to go on)."""
        return self.step >= self.total_steps

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / max(self.train_seconds, 1e-9)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite: training stopped, the last good checkpoint is kept."""


class _StateOnly:
    """Stands in for a model or optimizer whose full state was gathered: `save_checkpoint` only calls state_dict()."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = state


def log(message: str) -> None:
    """Print a line of the run's log (one process prints for all)."""
    if distributed.rank() == 0:
        print(f"[train] {message}", flush=True)


def _token_file_named(data: list[str] | None) -> TokenFile | None:
    """The token file (chapter 9) if `data` names one, else None; a token file must come alone."""
    token_files = [name for name in data or [] if sidecar_path(name).is_file()]
    if not token_files:
        return None
    if len(data) > 1:
        raise ValueError(f"--data mixes a token file ({token_files[0]}) with other data. Pass the token file alone, "
                         "or write everything into one token file (shared.token_file.write_token_file).")
    return open_token_file(token_files[0])


def _encode(documents: list[tuple[str, str]], tokenizer: Tokenizer) -> torch.Tensor:
    """All documents' ids in one stream, each followed by <|endoftext|>."""
    return torch.tensor(join_documents([text for _, text in documents], tokenizer), dtype=torch.long)


class Trainer:
    """One training run: its data, model, optimizer and position, which a checkpoint saves whole."""

    def __init__(self, config: TrainConfig):
        self.config = c = config
        self.started = time.perf_counter()
        self.out = Path(c.out)
        self.checkpoint_path = self.out / CHECKPOINT_NAME
        self.device = pick_device(c.device)
        self.strategy = c.distributed  # None: one process
        if self.strategy:
            self.device = distributed.setup(self.device.type, timeout_s=c.dist_timeout).device
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.evaluates = self.is_main or self.strategy == "fsdp"  # a sharded model needs every rank to run it
        self.precision = resolve_precision(c.precision, self.device)
        if self.is_main:
            check_room(self.out, 0)  # writable at all: found now, not after training
            removed = remove_orphan_temp_files(self.out, (CHECKPOINT_NAME, "summary.json"))
            if removed:
                log(f"removed {len(removed)} half-written file(s) left in {self.out} by a run that was killed")
        self.saved_step: int | None = None  # the step of the last checkpoint written or resumed from
        saved = self._saved_run()
        self._load_data(saved)
        self.cfg = saved["config"] if saved else c.model_config(self.tokenizer.vocab_size)
        for label, ids in (("training", self.train_ids), ("validation", self.val_ids)):
            if len(ids) <= self.cfg["context_length"] + 1:
                raise ValueError(f"the {label} text has {len(ids)} tokens, fewer than one context window of "
                                 f"{self.cfg['context_length']} + 1. Add text, or lower --context-length.")
        log(f"tokens: {len(self.train_ids):,} for training, {len(self.val_ids):,} for validation")
        self._build_model()
        if self.is_main:  # room for the checkpoint: weights plus at most two optimizer values per weight
            check_room(self.out, 3 * sum(p.numel() * p.element_size() for p in self.model.parameters()))
        self.step, self.total_steps, self.tokens_seen, self.train_seconds = 0, c.max_steps, 0, 0.0
        self.refit_at = None  # the step at which a time-budgeted run checks its step count again
        self.history: list[dict] = []
        if saved:
            self._resume(saved)

    # -- setting up ----------------------------------------------------------------------------------

    def _saved_run(self) -> dict | None:
        """The saved run's extra data when resuming (checked to be the same run), else None."""
        c = self.config
        if self.checkpoint_path.exists() and not c.resume:
            raise FileExistsError(f"{self.checkpoint_path} already exists. Pass --resume (resume=True) to continue "
                                  "that run, or choose another --out folder.")
        if not c.resume:
            return None
        if not self.checkpoint_path.exists():
            raise FileNotFoundError(f"--resume, but there is no checkpoint at {self.checkpoint_path}.")
        saved = json.loads(read_checkpoint(self.checkpoint_path)[1]["extra"])
        changed = c.changes_from(saved["args"])
        if changed:
            raise ValueError("--resume with settings that differ from the saved run's:\n  " + "\n  ".join(changed)
                             + "\nResume with the original settings, or start a new run in another --out folder.")
        return saved

    def _load_data(self, saved: dict | None) -> None:
        """The tokenizer, the training ids (maybe a memory map) and the held-out ids and documents."""
        c = self.config
        token_file = _token_file_named(c.data)
        if token_file is not None:  # chapter 9's uint16 token file: already tokenized, read through a memory map
            log(f"reading the token file {token_file.path} ({len(token_file):,} tokens, {token_file.num_documents:,} "
                f"documents; its own {token_file.tokenizer_name} tokenizer, --tokenizer is not used)")
            self.tokenizer = token_file.load_tokenizer()
            self.train_ids, self.val_ids = split_token_file(token_file, c.val_fraction)
            self.corpus = Corpus(train=[], val=held_out_documents(self.val_ids, self.tokenizer, token_file.eot_id,
                                                                  token_file.path.name))
            return
        log(f"reading the text ({'the Austen novels' if not c.data else ', '.join(c.data)})")
        self.corpus = build_corpus(c.data, c.val_fraction, c.val_novel)
        log(self.corpus.describe())
        if saved:
            self.tokenizer = tokenizer_from_description(saved["tokenizer"], source=f"{self.checkpoint_path}")
        else:
            log(f"building the tokenizer ({c.tokenizer})")
            self.tokenizer = build_tokenizer(c.tokenizer, "\n".join(t for _, t in self.corpus.train))
            if c.tokenizer != "gpt2" and self.tokenizer.vocab_size < int(c.tokenizer):
                raise ValueError(f"--tokenizer {c.tokenizer}: the training text supports only "
                                 f"{self.tokenizer.vocab_size:,} ids (it has no more pairs to merge). Use "
                                 f"--tokenizer {self.tokenizer.vocab_size} or fewer, or train on more text.")
        self.train_ids = _encode(self.corpus.train, self.tokenizer)
        self.val_ids = _encode(self.corpus.val, self.tokenizer)

    def _build_model(self) -> None:
        torch.manual_seed(self.config.seed)
        self.model = build_model(self.cfg)
        init_weights(self.model)
        self.model.to(self.device)
        self.num_params = sum(p.numel() for p in self.model.parameters())
        if self.strategy == "fsdp":
            distributed.wrap_model(self.model, "fsdp", self.device)  # shards in place: the optimizer below holds shards
        self.optimizer = self._new_optimizer()
        self.forward_model = self.model
        if self.strategy == "ddp":  # the wrapper trains; self.model (plain names) evaluates and saves
            self.forward_model = distributed.wrap_model(self.model, "ddp", self.device)
        if self.config.compile:
            self.forward_model = torch.compile(self.forward_model)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimizer for the model: no decay on biases and norms; Muon on request."""
        c = self.config
        return make_optimizer(self.model, c.optimizer, lr=c.lr, weight_decay=c.weight_decay, device=self.device,
                              muon_lr=c.muon_lr)

    def _resume(self, saved: dict) -> None:
        """Read the checkpoint into the model and optimizer (under FSDP each rank keeps its shards)."""
        if self.strategy != "fsdp":
            checkpoint = load_checkpoint(self.checkpoint_path, self.model, self.optimizer, restore_rng=True)
        else:
            full_model, full_optimizer = build_model(self.cfg), _StateOnly({})
            checkpoint = load_checkpoint(self.checkpoint_path, full_model, full_optimizer, restore_rng=True)
            distributed.load_full_state_dicts(self.model, self.optimizer, full_model.state_dict(),
                                              full_optimizer.state)
        self.step = self.saved_step = checkpoint.step
        self.total_steps = saved["total_steps"]
        c = self.config
        if c.max_steps is not None and c.max_steps != self.total_steps:
            raise ValueError(f"--resume with --max-steps {c.max_steps}, but the run was planned for "
                             f"{self.total_steps:,} steps and its learning-rate schedule decays to that step; changing "
                             f"it now would bend the schedule mid-run. Resume without --max-steps (or with "
                             f"{self.total_steps}), or start a new run in another --out folder.")
        if c.stop_at is not None and c.stop_at <= self.step:
            raise ValueError(f"--stop-at {c.stop_at}, but the run already is at step {self.step:,}: stop at a later "
                             "step, or leave --stop-at out to train to the end.")
        self.tokens_seen = saved["tokens_seen"]
        self.train_seconds = saved["train_seconds"]
        self.history = saved["history"]
        log(f"resumed at step {self.step:,} of {self.total_steps:,}")
        if saved.get("world_size", 1) != self.world_size:
            log(f"the run was saved by {saved.get('world_size', 1)} process(es), now {self.world_size}: "
                "training continues with a different global batch")

    # -- training --------------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the whole run (model, optimizer, position, history, settings) to its checkpoint."""
        extra = {"args": asdict(self.config), "tokenizer": describe_tokenizer(self.tokenizer), "config": self.cfg,
                 "total_steps": self.total_steps, "tokens_seen": self.tokens_seen,
                 "train_seconds": self.train_seconds, "history": self.history, "world_size": self.world_size}
        model, optimizer = self.model, self.optimizer
        if self.strategy == "fsdp":  # every rank sends its shards; rank 0 gets the whole state
            model_state, optimizer_state = distributed.full_state_dicts(self.model, self.optimizer)
            model, optimizer = _StateOnly(model_state), _StateOnly(optimizer_state)
        if self.is_main:
            save_checkpoint(self.checkpoint_path, model, optimizer, step=self.step, config=self.cfg, extra=extra)
        self.saved_step = self.step

    def micro_batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's micro-batches: rank r draws the stream's micro-batches r*A ... r*A + A - 1 (A = accumulation).

        So N processes with accumulation A train on exactly the batches one process draws with
        accumulation N x A, and rank 0 of a distributed run draws what a single process would.
        """
        c = self.config
        first = self.rank * c.accumulation_steps
        return [tuple(t.to(self.device) for t in sample_batch(self.train_ids, c.batch_size, self.cfg["context_length"],
                                                               c.seed, step, micro))
                for micro in range(first, first + c.accumulation_steps)]

    def learning_rate(self) -> float:
        """This step's rate: constant (chapter 5's loop), or warmup then cosine decay (appendix D)."""
        c = self.config
        if c.schedule == "constant":
            return c.lr
        return lr_at_step(self.step, peak_lr=c.lr, warmup_steps=min(c.warmup_steps, self.total_steps - 1),
                          total_steps=self.total_steps, initial_lr=c.lr / 100, min_lr=c.min_lr)

    def one_step(self) -> float:
        """One optimizer step over this step's micro-batches; the mean loss over every rank's batches."""
        c = self.config
        lr = self.learning_rate()
        loss, norm = optimizer_step(self.forward_model, self.micro_batches(self.step), self.optimizer, self.device,
                                    lr=lr, max_norm=c.max_norm or None, precision=self.precision)
        self.step += 1
        self.tokens_seen += self.world_size * c.batch_size * c.accumulation_steps * self.cfg["context_length"]
        loss = distributed.all_reduce_mean(loss, self.device)
        if not math.isfinite(loss) or (norm is not None and not math.isfinite(norm)):
            raise TrainingDiverged(self._diverged(loss, norm, lr))
        return loss

    def _diverged(self, loss: float, norm: float | None, lr: float) -> str:
        """What went wrong at this step, what was kept, and what to change."""
        c = self.config
        what = f"the training loss became {loss}" if not math.isfinite(loss) else f"the gradient norm became {norm}"
        kept = (f"the last checkpoint, step {self.saved_step:,} in {self.checkpoint_path}, is kept" if self.saved_step
                else "no checkpoint was written")
        rates = f"--lr {c.lr:g}" + (f" and --muon-lr {c.muon_lr:g}" if c.muon_lr is not None else "")
        return (f"{what} at step {self.step:,} (learning rate {lr:.3g} there): the run diverged and stopped; {kept}. "
                f"The usual cause is a learning rate too high: lower {rates} three to ten times and start a new run"
                + (", or try --precision fp32" if self.precision == "bf16" else "") + ".")

    def calibrate_steps(self) -> None:
        """With a time budget: time a few steps (not kept), then fix the step count for the whole run.

        The estimate is checked again after warmup, at step 200 or later (`refit_steps`), on the real
        steps, while the cosine decay has barely begun: a few probe steps can misjudge a long run's pace.
        """
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        rng = torch.get_rng_state()
        self.total_steps = 10**9  # any large number while timing
        self.one_step()  # warm-up: allocations, kernels
        started, probes = time.perf_counter(), 5
        for _ in range(probes):
            self.one_step()
        seconds_per_step = (time.perf_counter() - started) / probes
        # Start over: fresh weights and optimizer, the same random state.
        self.model.load_state_dict(state)
        self.optimizer = self._new_optimizer()
        torch.set_rng_state(rng)
        self.step, self.tokens_seen = 0, 0
        # Each rank timed its own steps: all follow rank 0's count.
        self.total_steps = distributed.broadcast_int(self.steps_in_budget(seconds_per_step), self.device)
        # Late enough that the first, slower steps weigh little; early enough that the decay has barely begun.
        self.refit_at = min(max(self.config.warmup_steps, 200), self.total_steps // 2)
        log(f"{seconds_per_step * 1000:.0f} ms per step -> {self.total_steps:,} steps in {self.config.minutes:g} min")

    def steps_in_budget(self, seconds_per_step: float) -> int:
        """How many steps in all fit what is left of the time budget, with validation checks and final scoring."""
        c = self.config
        # A forward pass costs about a third of a training step per token.
        tokens_per_step = c.batch_size * c.accumulation_steps * self.cfg["context_length"]
        forward_seconds_per_token = seconds_per_step / tokens_per_step / 3
        eval_seconds_per_step = c.eval_windows * self.cfg["context_length"] * forward_seconds_per_token / c.eval_every
        remaining = c.minutes * 60 - (time.perf_counter() - self.started)
        remaining -= len(self.val_ids) * forward_seconds_per_token + 5  # final scoring, sample, saving
        return self.step + max(int(0.97 * remaining / (seconds_per_step + eval_seconds_per_step)), 2)

    def refit_steps(self) -> str:
        """Re-fit the step count to the pace of the steps run so far (while the learning rate still warms up)."""
        seconds_per_step = self.train_seconds / self.step
        self.total_steps = max(self.steps_in_budget(seconds_per_step), self.step + 1)
        return f"[train] {seconds_per_step * 1000:.0f} ms per step so far -> {self.total_steps:,} steps in all"

    def sample(self, max_new_tokens: int = 60) -> str:
        """A short sample (temperature 0.8, top-k 40) that does not disturb training's random state."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed)
            was_training = self.model.training
            self.model.eval()
            idx = text_to_token_ids(self.config.prompt, self.tokenizer).to(self.device)
            out = generate(self.model, idx, max_new_tokens, self.cfg["context_length"], temperature=0.8, top_k=40)
            self.model.train(was_training)
        return token_ids_to_text(out, self.tokenizer)

    def validation_loss(self) -> float:
        """Mean loss per token over the first `eval_windows` non-overlapping windows of the held-out ids."""
        context = self.cfg["context_length"]
        ids = self.val_ids[: self.config.eval_windows * context + 1]
        with autocast(self.device, self.precision):
            nll, tokens = loss_over_token_ids(self.model, ids, self.device, batch_size=self.config.batch_size)
        return nll / tokens

    def _describe(self) -> str:
        c = self.config
        return (f"model: {self.num_params / 1e6:.2f}M parameters, {self.cfg['n_layers']} layers, "
                f"{self.cfg['emb_dim']} wide, context {self.cfg['context_length']}; device {self.device}, "
                f"{self.precision}; {self.total_steps:,} steps of {c.batch_size * c.accumulation_steps} x "
                f"{self.cfg['context_length']} tokens, {c.optimizer}, peak lr {c.lr:g}"
                + (f" (Muon's matrices {c.muon_lr:g})" if c.muon_lr is not None else ""))

    def train(self) -> TrainResult:
        """Train to the last step (or `stop_at`), saving as it goes, then score the held-out text.

        Ctrl-C or SIGTERM stops it after the step under way: it saves that step and raises `Interrupted`
        (a KeyboardInterrupt), and resuming continues exactly as if it had not stopped. A loss that
        becomes NaN or infinite raises `TrainingDiverged` without saving over the last checkpoint.
        """
        # tqdm.auto draws a widget in Jupyter; imported here, as pretraining.train_model does, because importing
        # it in a notebook without ipywidgets warns, and a notebook may import this module without training.
        from tqdm.auto import tqdm

        c = self.config
        if self.total_steps is None:
            self.calibrate_steps()
        log(self._describe())
        if self.strategy:
            log(f"{self.strategy} across {self.world_size} processes: each draws its own batches, so a step sees "
                f"{self.world_size} x {c.batch_size * c.accumulation_steps} = "
                f"{self.world_size * c.batch_size * c.accumulation_steps} sequences")
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", disable=not c.progress or not self.is_main,
                   dynamic_ncols=True)
        with StopRequests(log) as stop, contextlib.closing(bar):
            while self.step < self.total_steps:
                loss = self._timed_step(bar)
                if (self.step % c.eval_every == 0 or self.step == self.total_steps) and self.evaluates:
                    self._evaluate(loss, bar)
                if self.step % c.save_every == 0:
                    self.save()
                if self._stop_requested(stop):  # between two steps: the checkpoint holds whole steps only
                    bar.close()
                    self.save()
                    signum = stop.signal or 2
                    message = (f"interrupted at step {self.step:,} ({NAMES.get(signum, signum)}): saved "
                               f"{self.checkpoint_path}. Continue with the same command plus --resume.")
                    log(message)
                    raise Interrupted(message, signum)
                if c.stop_at is not None and self.step >= c.stop_at and self.step < self.total_steps:
                    bar.close()
                    self.save()
                    log(f"stopped at step {self.step:,} (--stop-at): continue with the same command plus --resume.")
                    return self.result()
            bar.close()
            self.save()
        return self.report()

    def _stop_requested(self, stop: StopRequests) -> bool:
        """Whether a signal asked this run to stop; across processes, whether any rank was asked (all stop)."""
        if self.world_size == 1:
            return stop.requested
        return distributed.all_reduce_mean(float(stop.requested), self.device) > 0

    def _timed_step(self, bar) -> float:
        """One step, timed; at `refit_at`, the step count re-fitted to the pace so far."""
        started = time.perf_counter()
        loss = self.one_step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.train_seconds += time.perf_counter() - started
        if self.step == self.refit_at:
            message = self.refit_steps()
            self.total_steps = distributed.broadcast_int(self.total_steps, self.device)  # rank 0's count
            if self.is_main:
                bar.write(message)
            bar.total = self.total_steps
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{self.tokens_seen / max(self.train_seconds, 1e-9):,.0f}",
                        refresh=False)
        return loss

    def _evaluate(self, train_loss: float, bar) -> None:
        """Validation loss on a few held-out windows, kept in the history and printed."""
        val_loss = self.validation_loss()
        tokens_per_s = self.tokens_seen / max(self.train_seconds, 1e-9)
        self.history.append({"step": self.step, "tokens": self.tokens_seen, "train_loss": train_loss,
                             "val_loss": val_loss, "tokens_per_s": tokens_per_s,
                             "gflops_per_s": flops_per_token(self.cfg) * tokens_per_s / 1e9})
        if self.is_main:
            bar.write(f"step {self.step:>6,}  train loss {train_loss:.3f}  val loss {val_loss:.3f}  "
                      f"{tokens_per_s:,.0f} tokens/s")

    def result(self, **scores) -> TrainResult:
        """The run as it stands, with the held-out `scores` if they were computed."""
        return TrainResult(checkpoint=self.checkpoint_path, step=self.step, total_steps=self.total_steps,
                           history=list(self.history), tokens_seen=self.tokens_seen,
                           train_seconds=self.train_seconds, parameters=self.num_params, config=dict(self.cfg),
                           **scores)

    def report(self) -> TrainResult:
        """Score the whole held-out text (bits per byte compare across tokenizers), save a summary, sample."""
        if not self.evaluates:
            return self.result()
        scores = [evaluate_text(self.model, text, self.tokenizer, self.device, batch_size=self.config.batch_size)
                  for _, text in self.corpus.val]
        nll, tokens, num_bytes = (sum(getattr(s, f) for s in scores) for f in ("nll_nats", "num_tokens", "num_bytes"))
        val_loss = nll / tokens
        tokens_per_s = self.tokens_seen / max(self.train_seconds, 1e-9)
        summary = {"step": self.step, "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
                   "val_bits_per_byte": bits_per_byte(nll, num_bytes), "val_tokens": tokens, "val_bytes": num_bytes,
                   "tokens_per_s": tokens_per_s, "train_seconds": self.train_seconds,
                   "tokens_seen": self.tokens_seen, "flops_per_token": flops_per_token(self.cfg),
                   "wall_seconds": time.perf_counter() - self.started, "parameters": self.num_params,
                   "config": self.cfg, "args": asdict(self.config)}
        if self.is_main:  # written before sampling, so nothing that happens there can lose it
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1) + "\n")
            log(f"held-out text: loss {val_loss:.3f} nats/token, perplexity {math.exp(val_loss):.1f}, "
                f"{summary['val_bits_per_byte']:.3f} bits per byte; trained {self.train_seconds / 60:.1f} min at "
                f"{tokens_per_s:,.0f} tokens/s")
            log(f"checkpoint: {self.checkpoint_path}  (talk to it: python -m shared.chat {self.checkpoint_path})")
        return self.result(val_loss=val_loss, val_perplexity=summary["val_perplexity"],
                           val_bits_per_byte=summary["val_bits_per_byte"], sample=self.sample(120), summary=summary)


def train(config: TrainConfig) -> TrainResult:
    """Run one training run as `config` says and return what it did (see `TrainResult`).

    The checkpoint in `config.out` can be resumed (`resume=True`) or talked to (`python -m shared.chat`).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig, not a {type(config).__name__}: train(TrainConfig(...)).")
    # One run per folder: rank 0 holds the lock for all the processes of a distributed run.
    with RunLock(config.out) if distributed.rank() == 0 else contextlib.nullcontext():
        return Trainer(config).train()
