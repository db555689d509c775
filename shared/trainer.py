"""Pretraining as a function: `train(TrainConfig(...))` runs appendix D's loop on a corpus and returns a `TrainResult`.

`TrainConfig` holds every setting of a run (each one a flag of `python -m shared.train`, which only
parses its arguments into a `TrainConfig` and calls `train`); the optimizers' tuned defaults fill in
what is left unset, and every value is checked when the config is made. `train` tokenizes and packs
the text, holds out a validation split (by default a whole novel, *Persuasion*), trains with
warmup, cosine decay and clipping (gradient accumulation and bf16 on request), writes a checkpoint
it can resume from exactly (also on Ctrl-C), and scores the held-out text in bits per byte.
A time budget (`minutes`, without `max_steps`) is met by re-fitting the step count to the recent
pace as the run goes (`Trainer.calibrate_steps`, `Trainer._refit`); speeds are reported
steady-state, the warm-up steps (and compilation) apart (`TrainResult`):

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from shared import distributed
from shared.architectures import ARCHITECTURES, architecture_config, build_model, init_weights
from shared.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from shared.corpus import NOVELS, Corpus, build_corpus
from shared.dataloader import join_documents
from shared.devices import memory_in_use_mib, peak_memory_mib, pick_device
from shared.evaluation import bits_per_byte, evaluate_text, loss_over_token_ids
from shared.files import atomic_write_text
from shared.interrupts import NAMES, Interrupted, StopRequests
from shared.optimizers import OPTIMIZERS, make_optimizer
from shared.pretraining import autocast, generate, resolve_precision, text_to_token_ids, token_ids_to_text
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
                "context_length", "tie_weights", "seed", "batch_size", "accumulation_steps", "schedule", "optimizer")
# Each process's first steps compile (--compile) and warm up allocators and kernels: timed apart as `warmup_seconds`
# and left out of the steady-state tokens/s.
WARMUP_STEPS_UNTIMED = 3
PROBE_STEPS = 5  # timed after the warm-up steps, to plan a time-budgeted run
# A time-budgeted run re-fits its step count to its recent pace every 1/REFITS_PER_BUDGET of the budget, until
# REFIT_UNTIL of the budget has passed; from there the plan is final.
REFITS_PER_BUDGET = 40
REFIT_UNTIL = 0.9
SAMPLE_TOKENS = 120  # the sample the report prints


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
    tie_weights: bool | None = None  # the output head is the token embedding; None: gpt2 unties, llama3/qwen3 tie
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
        if self.tie_weights is None:  # each architecture as published: the book's GPT-2 unties, small Llama/Qwen tie
            self.tie_weights = self.arch != "gpt2"
        if not isinstance(self.tie_weights, bool):
            raise ValueError(f"tie_weights={self.tie_weights!r} ({flag('tie_weights')}) must be True, False or None "
                             "(None: the architecture's own choice).")
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
        cfg = architecture_config(self.arch, cfg)
        if self.arch != "gpt2":
            cfg["tie_embeddings"] = self.tie_weights
        elif self.tie_weights:  # GPT-2's configs keep no key for it unless tied, as every earlier checkpoint
            cfg["tie_embeddings"] = True
        return cfg

    def changes_from(self, saved: dict) -> list[str]:
        """'--flag: saved X, now Y' for each setting of `RUN_IDENTITY` on which this config and a saved one differ.

        `saved` is what a checkpoint stored (`asdict` of the config it was trained with); runs saved
        before these names existed called `gpt2_size` "config" and always used AdamW.
        """
        saved = {"optimizer": "adamw", "arch": "gpt2", **saved}
        saved.setdefault("tie_weights", saved["arch"] != "gpt2")
        if "gpt2_size" not in saved and "config" in saved:
            saved["gpt2_size"] = saved["config"]
        return [f"{flag(k)}: saved {saved.get(k)!r}, now {getattr(self, k)!r}"
                for k in RUN_IDENTITY if saved.get(k) != getattr(self, k)]


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


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
    gflops_per_s, warmup_seconds). The held-out scores cover the whole validation text and are None
    when the run stopped early (`stop_at`) or on a process that does not evaluate. `summary` is what
    `summary.json` holds.

    Speeds are steady-state: `tokens_per_s` leaves out each process's first `WARMUP_STEPS_UNTIMED`
    steps (compilation with --compile, allocations), whose time is `warmup_seconds`; `train_seconds`
    is the time of every training step. (A history entry written before any steady step has
    tokens_per_s None.)
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
    warmup_seconds: float = 0.0
    steady_tokens: int = 0
    steady_seconds: float = 0.0

    @property
    def finished(self) -> bool:
        """True when the run trained all its steps (False after `stop_at`: resume it to go on)."""
        return self.step >= self.total_steps

    @property
    def tokens_per_s(self) -> float:
        """Steady-state training speed: tokens per second of the steps after warm-up (all steps if none was)."""
        return steady_rate(self.steady_tokens, self.steady_seconds, self.tokens_seen, self.train_seconds)


def steady_rate(steady_tokens: int, steady_seconds: float, tokens: int, seconds: float) -> float:
    """Tokens per second over the steady steps; over all steps when no step after warm-up was timed yet."""
    if steady_seconds > 0:
        return steady_tokens / steady_seconds
    return tokens / max(seconds, 1e-9)


def next_token_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `model`'s next-token predictions: section 5.1.3's `calc_loss_batch`, with the
    batches already on the model's device. With --compile the trainer compiles this whole function, so the
    vocabulary-wide logits and their cross-entropy run inside the compiled graph."""
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


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
    """One training run: its data, model, optimizer and position, which a checkpoint saves whole.

    `clock` is the timer behind every duration and the time budget (`time.perf_counter`; tests pass a
    simulated one).
    """

    def __init__(self, config: TrainConfig, clock: Callable[[], float] = time.perf_counter):
        self.config = c = config
        self.clock = clock
        self.started = clock()
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
        self.memory_before_model = memory_in_use_mib(self.device)  # data and tokenizer already loaded
        self._build_model()
        if self.is_main:  # room for the checkpoint: weights plus at most two optimizer values per weight
            check_room(self.out, 3 * sum(p.numel() * p.element_size() for p in self.model.parameters()))
        self.step, self.total_steps, self.tokens_seen, self.train_seconds = 0, c.max_steps, 0, 0.0
        # The schedule: warmup steps, then a cosine over a "progress" fraction that reaches 1 at the last step.
        # Re-fitting the step count moves the anchor (the step and progress where the current slope starts), so
        # a new count changes the slope of what is left, never the current learning rate.
        self.warmup, self.anchor_step, self.anchor_progress = 0, 0, 0.0
        if self.total_steps is not None:
            self._plan_schedule()
        # A time budget (no max_steps): the step count is re-fitted every `refit_every` steps to the pace since
        # `last_refit` (step, seconds into the budget, seconds of checks and saves), until the plan is final.
        self.budgeted = c.max_steps is None
        self.refit_every: int | None = None
        self.last_refit = (0, 0.0, 0.0)
        self.plan_final = False
        # A forward pass's cost per token over a training step's, measured on the validation checks (a third:
        # backward costs about twice the forward, until measured); the pace may change, the ratio hardly does.
        self.forward_ratio = 1 / 3
        self.last_step_seconds: float | None = None
        self.save_seconds = 0.0  # the last checkpoint's writing time
        self.check_seconds = 0.0  # all the validation checks' and saves' time: the pace leaves them out
        # Steady-state speed: this process's first steps are warm-up, timed apart.
        self.warm_steps_left = WARMUP_STEPS_UNTIMED
        self.warmup_seconds, self.steady_seconds, self.steady_tokens = 0.0, 0.0, 0
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
        self.num_params = sum(p.numel() for p in self.model.parameters())  # a tied matrix counts once
        if self.strategy == "fsdp":
            distributed.wrap_model(self.model, "fsdp", self.device)  # shards in place: the optimizer below holds shards
        self.optimizer = self._new_optimizer()
        self.forward_model = self.model
        if self.strategy == "ddp":  # the wrapper trains; self.model (plain names) evaluates and saves
            self.forward_model = distributed.wrap_model(self.model, "ddp", self.device)
        compile_wrapper = self.config.compile and self.strategy == "ddp"  # DDP's gradient hooks: compile the wrapper
        if compile_wrapper:
            self.forward_model = torch.compile(self.forward_model)
        forward_model = self.forward_model

        def loss_fn(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return next_token_loss(forward_model, inputs, targets)

        # Otherwise the model and its loss in one graph: the vocabulary-wide logits never leave it.
        self.loss_fn = torch.compile(loss_fn) if self.config.compile and not compile_wrapper else loss_fn

    def _new_optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimizer for the model: no decay on biases and norms; Muon on request."""
        c = self.config
        return make_optimizer(self.model, c.optimizer, lr=c.lr, weight_decay=c.weight_decay, device=self.device,
                              muon_lr=c.muon_lr)

    def _resume(self, saved: dict) -> None:
        """Read the checkpoint into the model and optimizer (under FSDP each rank keeps its shards), and the plan."""
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
        self.warmup_seconds = saved.get("warmup_seconds", 0.0)
        self.steady_seconds = saved.get("steady_seconds", 0.0)
        self.steady_tokens = saved.get("steady_tokens", 0)
        schedule = saved.get("schedule")  # absent in runs saved before re-fitting: the plain cosine to total_steps
        if schedule:
            self.warmup, self.anchor_step, self.anchor_progress = (schedule["warmup"], schedule["anchor_step"],
                                                                   schedule["anchor_progress"])
        else:
            self._plan_schedule()
        # A time-budgeted run goes on re-fitting toward what is left of its budget, from the state it saved,
        # so it makes the decisions the uninterrupted run would have made on the same clock.
        self.started -= saved.get("wall_seconds", 0.0)  # the run's time so far, in the earlier process(es)
        budget = saved.get("budget")
        self.budgeted = budget is not None and c.max_steps is None
        if self.budgeted:
            self.refit_every, self.plan_final = budget["refit_every"], budget["plan_final"]
            self.last_refit = tuple(budget["last_refit"])
            self.forward_ratio, self.save_seconds = budget["forward_ratio"], budget["save_seconds"]
            self.check_seconds = budget["check_seconds"]
        log(f"resumed at step {self.step:,} of {self.total_steps:,}")
        if saved.get("world_size", 1) != self.world_size:
            log(f"the run was saved by {saved.get('world_size', 1)} process(es), now {self.world_size}: "
                "training continues with a different global batch")

    # -- training --------------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the whole run (model, optimizer, position, plan, history, settings) to its checkpoint."""
        started = self.clock()
        extra = {"args": asdict(self.config), "tokenizer": describe_tokenizer(self.tokenizer), "config": self.cfg,
                 "total_steps": self.total_steps, "tokens_seen": self.tokens_seen,
                 "wall_seconds": started - self.started, "train_seconds": self.train_seconds,
                 "warmup_seconds": self.warmup_seconds,
                 "steady_seconds": self.steady_seconds, "steady_tokens": self.steady_tokens,
                 "schedule": {"warmup": self.warmup, "anchor_step": self.anchor_step,
                              "anchor_progress": self.anchor_progress},
                 "history": self.history, "world_size": self.world_size}
        if self.budgeted:
            extra["budget"] = {"refit_every": self.refit_every,
                               "plan_final": self.plan_final, "last_refit": list(self.last_refit),
                               "forward_ratio": self.forward_ratio,
                               "save_seconds": self.save_seconds, "check_seconds": self.check_seconds}
        model, optimizer = self.model, self.optimizer
        if self.strategy == "fsdp":  # every rank sends its shards; rank 0 gets the whole state
            model_state, optimizer_state = distributed.full_state_dicts(self.model, self.optimizer)
            model, optimizer = _StateOnly(model_state), _StateOnly(optimizer_state)
        if self.is_main:
            save_checkpoint(self.checkpoint_path, model, optimizer, step=self.step, config=self.cfg, extra=extra)
        self.saved_step = self.step
        self.save_seconds = self.clock() - started
        self.check_seconds += self.save_seconds

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

    def _plan_schedule(self) -> None:
        """The schedule for `total_steps` from the start: warmup, then the cosine from progress 0 at its end."""
        self.warmup = min(self.config.warmup_steps, self.total_steps - 1)
        self.anchor_step, self.anchor_progress = self.warmup, 0.0

    def decay_progress(self, step: int) -> float:
        """How far the cosine decay is at `step` (0 at the end of warmup, 1 at the last step, `total_steps - 1`):
        the anchor's progress plus an equal share of what is left for each step up to the last."""
        if step <= self.anchor_step:
            return self.anchor_progress
        span = max(self.total_steps - 1 - self.anchor_step, 1)
        return min(self.anchor_progress + (1.0 - self.anchor_progress) * (step - self.anchor_step) / span, 1.0)

    def set_total_steps(self, total_steps: int) -> None:
        """Re-plan the run to end after `total_steps` steps without changing the current learning rate: the
        cosine goes on from where it is, at the slope that reaches its end at the new last step."""
        anchor = max(self.step, self.warmup)
        self.anchor_progress = self.decay_progress(anchor)
        self.anchor_step, self.total_steps = anchor, max(total_steps, self.step + 1, self.warmup + 1)

    def learning_rate(self) -> float:
        """This step's rate: constant (chapter 5's loop), or warmup then cosine decay (appendix D).

        With a fixed step count it is `lr_at_step`'s (appendix D) exactly; a re-fitted count changes the
        slope of the decay from the step where it changed (`set_total_steps`)."""
        c = self.config
        if c.schedule == "constant":
            return c.lr
        initial_lr = c.lr / 100
        if self.step < self.warmup:
            return initial_lr + (c.lr - initial_lr) * self.step / self.warmup
        progress = self.decay_progress(self.step)
        return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    def one_step(self) -> float:
        """One optimizer step over this step's micro-batches; the mean loss over every rank's batches.

        The micro-batches' losses add up on the device: the host waits for the device once per step,
        after the optimizer step is queued, to read the loss and the gradient norm."""
        c = self.config
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:  # Muon's groups scale the schedule by their "lr_scale"
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        batches = self.micro_batches(self.step)
        total = None
        for inputs, targets in batches:
            with autocast(self.device, self.precision):
                loss = self.loss_fn(inputs, targets) / len(batches)
            loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        norm = None
        if c.max_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.forward_model.parameters(), max_norm=c.max_norm)
        self.optimizer.step()
        loss, norm = total.item(), None if norm is None else norm.item()  # the step's one wait for the device
        self.step += 1
        self.tokens_seen += self.tokens_per_step()
        loss = distributed.all_reduce_mean(loss, self.device)
        if not math.isfinite(loss) or (norm is not None and not math.isfinite(norm)):
            raise TrainingDiverged(self._diverged(loss, norm, lr))
        return loss

    def tokens_per_step(self) -> int:
        """Tokens one optimizer step trains on, over all processes."""
        c = self.config
        return self.world_size * c.batch_size * c.accumulation_steps * self.cfg["context_length"]

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

    # -- the time budget -----------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds of the time budget used so far (by earlier processes too, when resumed)."""
        return self.clock() - self.started

    def calibrate_steps(self) -> None:
        """With a time budget: time a few steps (not kept), then plan the run's step count, a first estimate.

        The warm-up steps (compilation, allocations) come first and count as `warmup_seconds`; the
        probes after them give the pace. Training then starts over from the same weights and random
        state, and `_refit` corrects the count as the run goes (`refit_every` steps, about 1/40 of the
        budget each), until 90% of the budget has passed.
        """
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        rng = torch.get_rng_state()
        self.total_steps = 10**9  # any large number while timing
        self._plan_schedule()
        for _ in range(self.warm_steps_left):  # warm-up: compilation, allocations, kernels
            started = self.clock()
            self.one_step()
            self.warmup_seconds += self.clock() - started
        self.warm_steps_left = 0  # this process is warm: every training step is a steady one
        started = self.clock()
        for _ in range(PROBE_STEPS):
            self.one_step()
        seconds_per_step = (self.clock() - started) / PROBE_STEPS
        # Start over: fresh weights and optimizer, the same random state.
        self.model.load_state_dict(state)
        self.optimizer = self._new_optimizer()
        torch.set_rng_state(rng)
        self.step, self.tokens_seen = 0, 0
        # Each rank timed its own steps: all follow rank 0's plan.
        self.total_steps = distributed.broadcast_int(self.steps_in_budget(seconds_per_step), self.device)
        self._plan_schedule()
        every = round(self.config.minutes * 60 / REFITS_PER_BUDGET / max(seconds_per_step, 1e-9))
        self.refit_every = distributed.broadcast_int(max(every, 1), self.device)
        self.last_refit = (0, self.elapsed(), self.check_seconds)
        log(f"{seconds_per_step * 1000:.0f} ms per step -> {self.total_steps:,} steps in {self.config.minutes:g} min "
            f"(re-fitted every {self.refit_every:,} steps until {REFIT_UNTIL:.0%} of the budget)")

    def _forward_seconds_per_token(self, seconds_per_step: float) -> float:
        """A forward pass's seconds per token at a pace of `seconds_per_step` (`forward_ratio` of a step's)."""
        c = self.config
        tokens_per_step = c.batch_size * c.accumulation_steps * self.cfg["context_length"]
        return self.forward_ratio * seconds_per_step / tokens_per_step

    def steps_in_budget(self, seconds_per_step: float) -> int:
        """How many steps in all fit what is left of the time budget at `seconds_per_step` (training only), with
        the validation checks and saves still to come, the final scoring, the sample and the last save."""
        c = self.config
        forward = self._forward_seconds_per_token(seconds_per_step)
        checks_per_step = c.eval_windows * self.cfg["context_length"] * forward / c.eval_every
        seconds_per_step += checks_per_step + self.save_seconds / c.save_every
        final = (len(self.val_ids) + SAMPLE_TOKENS) * forward + self.save_seconds
        remaining = c.minutes * 60 - self.elapsed() - final
        return self.step + max(int(remaining / max(seconds_per_step, 1e-9)), 1)

    def _refit(self) -> str | None:
        """Re-fit the step count to the pace since the last re-fit (the wall clock's, less the validation
        checks and saves, whose cost `steps_in_budget` spreads evenly); a line for the log when the plan
        changed by more than 2% or became final, else None."""
        elapsed = self.elapsed()
        last_step, last_elapsed, last_checks = self.last_refit
        pace = (elapsed - last_elapsed - (self.check_seconds - last_checks)) / max(self.step - last_step, 1)
        final = elapsed >= REFIT_UNTIL * self.config.minutes * 60
        total = max(self.steps_in_budget(pace), self.step + 1)
        # One decision for all ranks: rank 0's count and whether the plan is final, in one broadcast.
        total, final = divmod(distributed.broadcast_int(2 * total + final, self.device), 2)
        before = self.total_steps
        if total != before:
            self.set_total_steps(total)
        self.last_refit, self.plan_final = (self.step, elapsed, self.check_seconds), bool(final)
        if final:
            return (f"{pace * 1000:.0f} ms per step lately -> {self.total_steps:,} steps in all, final "
                    f"({elapsed / 60:.1f} of {self.config.minutes:g} min used)")
        if abs(self.total_steps - before) > 0.02 * before:
            return f"{pace * 1000:.0f} ms per step lately -> {self.total_steps:,} steps in all"
        return None

    # -- the loop, the checks and the report ----------------------------------------------------------

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
        started = self.clock()
        with autocast(self.device, self.precision):
            nll, tokens = loss_over_token_ids(self.model, ids, self.device, batch_size=self.config.batch_size)
        seconds = self.clock() - started
        self.check_seconds += seconds
        if self.last_step_seconds:  # what the final scoring will cost, relative to the pace of training
            c = self.config
            step_per_token = self.last_step_seconds / (c.batch_size * c.accumulation_steps * context)
            self.forward_ratio = seconds / max(tokens, 1) / step_per_token
        return nll / tokens

    def _describe(self) -> str:
        c = self.config
        tied = self.cfg.get("tie_embeddings", False)
        return (f"model: {self.num_params / 1e6:.2f}M parameters, {self.cfg['n_layers']} layers, "
                f"{self.cfg['emb_dim']} wide, context {self.cfg['context_length']}"
                + (", head tied to the embedding" if tied else "") + f"; device {self.device}, "
                f"{self.precision}; {self.total_steps:,} steps of {c.batch_size * c.accumulation_steps} x "
                f"{self.cfg['context_length']} tokens, {c.optimizer}, peak lr {c.lr:g}"
                + (f" (Muon's matrices {c.muon_lr:g})" if c.muon_lr is not None else ""))

    def train(self) -> TrainResult:
        """Train to the last step (or `stop_at`), saving as it goes, then score the held-out text.

        With a time budget (no `max_steps`) the step count is planned from a few timed steps and
        re-fitted to the recent pace as the run goes, until 90% of the budget has passed, so the run,
        final scoring included, ends close to `minutes` whether the machine speeds up or slows down;
        each re-fit changes the slope of the cosine decay from there on, never the current rate.

        Ctrl-C or SIGTERM stops it after the step under way: it saves that step and raises `Interrupted`
        (a KeyboardInterrupt), and resuming continues exactly as if it had not stopped (a time-budgeted
        run with the plan it had, re-fitting to what is left of its budget). A loss that becomes NaN or
        infinite raises `TrainingDiverged` without saving over the last checkpoint.
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
        """One step, timed (this process's first steps as warm-up, the rest as steady state); with a time
        budget, every `refit_every` steps until the plan is final, the step count re-fitted (`_refit`)."""
        started = self.clock()
        loss = self.one_step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = self.clock() - started
        self.train_seconds += seconds
        self.last_step_seconds = seconds
        if self.warm_steps_left:
            self.warm_steps_left -= 1
            self.warmup_seconds += seconds
            if not self.warm_steps_left and self.is_main:
                bar.write(f"[train] warm-up: this process's first {WARMUP_STEPS_UNTIMED} steps took "
                          f"{self.warmup_seconds:.1f} s in all" + (" (compilation included)" if self.config.compile
                                                                    else "") + "; tokens/s leave them out")
        else:
            self.steady_seconds += seconds
            self.steady_tokens += self.tokens_per_step()
        if (self.budgeted and not self.plan_final and self.refit_every and self.step < self.total_steps
                and self.step % self.refit_every == 0):
            message = self._refit()
            if message and self.is_main:
                bar.write("[train] " + message)
            bar.total = self.total_steps
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{self.tokens_per_s():,.0f}", refresh=False)
        return loss

    def tokens_per_s(self) -> float:
        """Steady-state tokens per second so far (over every step while none after warm-up was timed)."""
        return steady_rate(self.steady_tokens, self.steady_seconds, self.tokens_seen, self.train_seconds)

    def _evaluate(self, train_loss: float, bar) -> None:
        """Validation loss on a few held-out windows, kept in the history and printed."""
        val_loss = self.validation_loss()
        steady = self.steady_tokens / self.steady_seconds if self.steady_seconds > 0 else None
        self.history.append({"step": self.step, "tokens": self.tokens_seen, "train_loss": train_loss,
                             "val_loss": val_loss, "tokens_per_s": steady,
                             "gflops_per_s": None if steady is None else flops_per_token(self.cfg) * steady / 1e9,
                             "warmup_seconds": self.warmup_seconds})
        if self.is_main:
            speed = f"{steady:,.0f} tokens/s" if steady is not None else "warming up"
            bar.write(f"step {self.step:>6,}  train loss {train_loss:.3f}  val loss {val_loss:.3f}  {speed}")

    def result(self, **scores) -> TrainResult:
        """The run as it stands, with the held-out `scores` if they were computed."""
        return TrainResult(checkpoint=self.checkpoint_path, step=self.step, total_steps=self.total_steps,
                           history=list(self.history), tokens_seen=self.tokens_seen,
                           train_seconds=self.train_seconds, parameters=self.num_params, config=dict(self.cfg),
                           warmup_seconds=self.warmup_seconds, steady_tokens=self.steady_tokens,
                           steady_seconds=self.steady_seconds, **scores)

    def report(self) -> TrainResult:
        """Score the whole held-out text (bits per byte compare across tokenizers), save a summary, sample.

        summary.json's `tokens_per_s` is the steady-state speed (the steps after each process's warm-up);
        `warmup_seconds` the warm-up steps' time (with --compile, compilation); `train_seconds` every
        training step's; `wall_seconds` the whole run's, set-up and checks included (over every process
        of a resumed run, as a time budget counts it)."""
        if not self.evaluates:
            return self.result()
        scores = [evaluate_text(self.model, text, self.tokenizer, self.device, batch_size=self.config.batch_size)
                  for _, text in self.corpus.val]
        nll, tokens, num_bytes = (sum(getattr(s, f) for s in scores) for f in ("nll_nats", "num_tokens", "num_bytes"))
        val_loss = nll / tokens
        tokens_per_s = self.tokens_per_s()
        summary = {"step": self.step, "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
                   "val_bits_per_byte": bits_per_byte(nll, num_bytes), "val_tokens": tokens, "val_bytes": num_bytes,
                   "tokens_per_s": tokens_per_s, "warmup_seconds": self.warmup_seconds,
                   "steady_seconds": self.steady_seconds, "steady_tokens": self.steady_tokens,
                   "train_seconds": self.train_seconds, "tokens_seen": self.tokens_seen,
                   "flops_per_token": flops_per_token(self.cfg), "wall_seconds": self.elapsed(),
                   "peak_memory_mib": peak_memory_mib(self.device),
                   "training_memory_mib": _difference(peak_memory_mib(self.device), self.memory_before_model),
                   "parameters": self.num_params, "config": self.cfg, "args": asdict(self.config)}
        if self.is_main:  # written before sampling, so nothing that happens there can lose it
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1) + "\n")
            log(f"held-out text: loss {val_loss:.3f} nats/token, perplexity {math.exp(val_loss):.1f}, "
                f"{summary['val_bits_per_byte']:.3f} bits per byte; trained {self.train_seconds / 60:.1f} min at "
                f"{tokens_per_s:,.0f} tokens/s (steady state; warm-up {self.warmup_seconds:.1f} s"
                + (", compilation included" if self.config.compile else "") + ")")
            log(f"checkpoint: {self.checkpoint_path}  (talk to it: python -m shared.chat {self.checkpoint_path})")
        return self.result(val_loss=val_loss, val_perplexity=summary["val_perplexity"],
                           val_bits_per_byte=summary["val_bits_per_byte"], sample=self.sample(SAMPLE_TOKENS),
                           summary=summary)


def train(config: TrainConfig, *, clock: Callable[[], float] = time.perf_counter) -> TrainResult:
    """Run one training run as `config` says and return what it did (see `TrainResult`).

    The checkpoint in `config.out` can be resumed (`resume=True`) or talked to (`python -m shared.chat`).
    `clock` times the run and its budget (tests pass a simulated one).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig, not a {type(config).__name__}: train(TrainConfig(...)).")
    # One run per folder: rank 0 holds the lock for all the processes of a distributed run.
    with RunLock(config.out) if distributed.rank() == 0 else contextlib.nullcontext():
        return Trainer(config, clock).train()
