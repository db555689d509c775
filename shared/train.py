"""Pretrain your own GPT: `python -m shared.train` (the Austen novels) or `python -m shared.train --data my_texts/`.

The command tokenizes and packs the text, holds out a validation split (by default a whole novel,
*Persuasion*, that the model never sees), trains with appendix D's loop (warmup, cosine decay,
clipping; gradient accumulation and bf16 on request), shows progress, writes a checkpoint it can
resume from (also on Ctrl-C), reports held-out perplexity and bits per byte, and prints samples.
`python -m shared.generate CHECKPOINT` then talks to the model. `--help` lists every option.

Across processes: `torchrun --nproc_per_node=N -m shared.train [--distributed ddp|fsdp] ...` (see
`shared/distributed.py`). Each process draws its own batches, so the global batch is N x
--batch-size x --accumulation-steps; rank 0 alone prints and writes checkpoints, which a single
process can load and resume.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared import distributed
from shared.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from shared.data import NOVELS, join_documents, load_novel
from shared.evaluation import bits_per_byte, evaluate_text
from shared.optimizers import OPTIMIZERS, make_optimizer
from shared.pretraining import generate, lr_at_step, resolve_precision, text_to_token_ids, token_ids_to_text, train_step
from shared.token_file import TokenFile, open_token_file, sidecar_path
from shared.tokenization import BPETokenizer, get_gpt2_tokenizer
from shared.transformer import GPT2_CONFIGS, GPTModel

CHECKPOINT_NAME = "checkpoint.safetensors"
DEFAULT_VAL_NOVEL = "persuasion"
DEFAULT_PROMPT = "It is a truth universally acknowledged"

# -- the text -----------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Named documents for training and for validation."""

    train: list[tuple[str, str]]
    val: list[tuple[str, str]]

    def describe(self) -> str:
        def size(docs):
            return f"{len(docs)} document(s), {sum(len(t.encode('utf-8')) for _, t in docs):,} bytes"
        return f"train: {size(self.train)}; validation: {size(self.val)}"


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's contents, with a clear error for binary or empty files."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ValueError(f"{path} looks like a binary file, not text. Pass plain-text (.txt) files.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err}). Convert it, e.g. `iconv -t utf-8`, and retry.") from err
    if not text.strip():
        raise ValueError(f"{path} is empty. Remove it or add text to it.")
    return text


def load_documents(paths: list[str]) -> list[tuple[str, str]]:
    """Every .txt file named, or found (recursively, sorted) in the folders named, as (name, text)."""
    documents = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not files:
                raise ValueError(f"the folder {path} holds no .txt files.")
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"{path} does not exist.")
        documents += [(str(file), read_text_file(file)) for file in files]
    return documents


def build_corpus(data: list[str] | None, val_fraction: float, val_novel: str) -> Corpus:
    """The shipped novels with one held out, or the reader's files with the end of each held out."""
    if not data:
        if val_novel not in NOVELS:
            raise ValueError(f"--val-novel {val_novel!r} is not one of the shipped novels: {', '.join(NOVELS)}.")
        return Corpus(train=[(n, load_novel(n)) for n in NOVELS if n != val_novel],
                      val=[(val_novel, load_novel(val_novel))])
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction {val_fraction} must be between 0 and 1, e.g. 0.1.")
    train, val = [], []
    for name, text in load_documents(data):
        cut = int(len(text) * (1 - val_fraction))
        cut = text.rfind("\n", 0, cut) + 1 or cut  # cut at a line break where there is one
        train.append((name, text[:cut]))
        val.append((name, text[cut:]))
    return Corpus(train=train, val=[(n, t) for n, t in val if t.strip()])


def token_file_named(data: list[str] | None) -> TokenFile | None:
    """The token file (chapter 9) if --data names one, else None; a token file must come alone."""
    token_files = [name for name in data or [] if sidecar_path(name).is_file()]
    if not token_files:
        return None
    if len(data) > 1:
        raise ValueError(f"--data mixes a token file ({token_files[0]}) with other data. Pass the token file alone, "
                         "or write everything into one token file (shared.token_file.write_token_file).")
    return open_token_file(token_files[0])


def split_token_file(token_file: TokenFile, val_fraction: float) -> tuple[np.ndarray, torch.Tensor]:
    """Training ids (still a memory map: nothing is read) and the held-out end, cut after an <|endoftext|>."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction {val_fraction} must be between 0 and 1, e.g. 0.1.")
    tokens = token_file.tokens
    cut = int(len(tokens) * (1 - val_fraction))
    window = np.asarray(tokens[max(cut - 1_000_000, 0):cut])  # look back at most 1M tokens for a document end
    ends = np.flatnonzero(window == token_file.eot_id)
    if len(ends):
        cut = max(cut - 1_000_000, 0) + int(ends[-1]) + 1
    return tokens[:cut], torch.from_numpy(np.asarray(tokens[cut:]).astype(np.int64))


def held_out_documents(val_ids: torch.Tensor, tokenizer, eot_id: int, name: str) -> list[tuple[str, str]]:
    """The held-out ids as text documents (split at <|endoftext|>), for the final bits-per-byte scoring."""
    documents, start = [], 0
    ids = val_ids.tolist()
    for end in [i for i, t in enumerate(ids) if t == eot_id] + [len(ids)]:
        if end > start:
            documents.append((f"{name} (held-out document {len(documents) + 1})", tokenizer.decode(ids[start:end])))
        start = end + 1
    return [(n, t) for n, t in documents if t.strip()]


# -- the tokenizer ----------------------------------------------------------------------------------


def build_tokenizer(spec: str, train_text: str):
    """GPT-2's tokenizer ('gpt2'), or a byte-level BPE with `spec` ids learned from the training text."""
    if spec == "gpt2":
        return get_gpt2_tokenizer()
    try:
        vocab_size = int(spec)
    except ValueError:
        raise ValueError(f"--tokenizer {spec!r}: use 'gpt2' or a vocabulary size such as 4096.") from None
    return BPETokenizer.train(train_text, vocab_size, special_tokens=["<|endoftext|>"])


def tokenizer_to_json(tokenizer) -> dict:
    """What a checkpoint stores to rebuild the tokenizer."""
    if isinstance(tokenizer, BPETokenizer):
        return {"kind": "bpe", "json": tokenizer.to_json()}
    return {"kind": "gpt2"}


def tokenizer_from_json(data: dict):
    """Rebuild the tokenizer `tokenizer_to_json` described."""
    if data.get("kind") == "bpe":
        return BPETokenizer.from_json(data["json"], source="the checkpoint's tokenizer")
    if data.get("kind") == "gpt2":
        return get_gpt2_tokenizer()
    raise ValueError(f"unknown tokenizer description in checkpoint: {data}")


def vocab_size_of(tokenizer) -> int:
    return tokenizer.vocab_size if isinstance(tokenizer, BPETokenizer) else tokenizer.n_vocab


def encode_documents(documents: list[tuple[str, str]], tokenizer) -> torch.Tensor:
    """All documents' ids in one stream, each followed by <|endoftext|> (chapter 2's `join_documents`)."""
    return torch.tensor(join_documents([text for _, text in documents], tokenizer), dtype=torch.long)


# -- batches ------------------------------------------------------------------------------------------


def sample_batch(ids: torch.Tensor | np.ndarray, batch_size: int, context_length: int, seed: int, step: int,
                 micro: int = 0):
    """Random windows of the token stream, a function of (seed, step, micro) alone.

    Because no sampler state carries over between steps, a resumed run draws exactly the batches
    the uninterrupted run would have drawn. `ids` may be a memory-mapped token file (chapter 9).
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + micro)
    starts = torch.randint(0, len(ids) - context_length, (batch_size,), generator=generator)
    positions = starts[:, None] + torch.arange(context_length)
    if isinstance(ids, np.ndarray):  # a memory-mapped token file: read only these windows from disk
        positions = positions.numpy()
        return (torch.from_numpy(ids[positions].astype(np.int64)),
                torch.from_numpy(ids[positions + 1].astype(np.int64)))
    return ids[positions], ids[positions + 1]


def eval_windows(ids: torch.Tensor, context_length: int, max_windows: int | None = None):
    """Consecutive, non-overlapping (input, target) windows over the stream: the same every evaluation."""
    count = (len(ids) - 1) // context_length
    if max_windows is not None:
        count = min(count, max_windows)
    x = ids[: count * context_length].view(count, context_length)
    y = ids[1 : count * context_length + 1].view(count, context_length)
    return x, y


@torch.no_grad()
def evaluate_loss(model, x, y, device, batch_size: int, precision: str) -> float:
    """Mean next-token loss in nats over the windows (x, y), every token weighted equally."""
    from shared.pretraining import autocast

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        with autocast(device, precision):
            logits = model(xb)
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(),
                                                   reduction="sum").item()
        count += yb.numel()
    model.train(was_training)
    return total / count


# -- the model ---------------------------------------------------------------------------------------


def init_gpt2_style(model: GPTModel) -> None:
    """GPT-2's initialisation: weights ~ N(0, 0.02), biases 0, and the two projections that feed each
    shortcut scaled by 1/sqrt(2 * n_layers), so the residual stream does not grow with depth.

    PyTorch's defaults (N(0, 1) embeddings) train, but more slowly at the learning rates used here.
    """
    std = 0.02
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
    residual_std = std / math.sqrt(2 * model.cfg["n_layers"])
    for block in model.trf_blocks:
        torch.nn.init.normal_(block.att.out_proj.weight, mean=0.0, std=residual_std)
        torch.nn.init.normal_(block.ff.layers[2].weight, mean=0.0, std=residual_std)


def model_config(args, vocab_size: int) -> dict:
    """The GPTModel config: a GPT-2 size by name (--config), or the small default with any overrides."""
    if args.config:
        if args.config not in GPT2_CONFIGS:
            raise ValueError(f"--config {args.config!r}: use one of {', '.join(GPT2_CONFIGS)}, or leave it out.")
        cfg = dict(GPT2_CONFIGS[args.config])
    else:
        # Small and fast: in a 10-minute CPU budget, more steps beat a bigger model (see benchmarks/).
        cfg = {"context_length": 128, "emb_dim": 128, "n_heads": 4, "n_layers": 4, "drop_rate": 0.0,
               "qkv_bias": False}
    for key in ("context_length", "emb_dim", "n_heads", "n_layers", "drop_rate"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    cfg["vocab_size"] = vocab_size
    return cfg


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but PyTorch sees no CUDA GPU. Use --device cpu (or auto).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps but this machine has no Apple GPU available. Use --device cpu (or auto).")
    return device


def flops_per_token(cfg: dict) -> float:
    """Training FLOPs per token of a GPTModel: 6 per weight in a matrix product (forward + backward), plus attention.

    The weights that multiply are each block's 12 * width**2 (query, key, value and output
    projections, and the 4x-wide feed-forward) and the output head's vocabulary * width; the
    embeddings are looked up, which costs no FLOPs. Attention's scores and weighted sums add
    12 * layers * context * width (all of the causal square, which the kernels compute).
    """
    d, layers = cfg["emb_dim"], cfg["n_layers"]
    multiplying = 12 * layers * d * d + cfg["vocab_size"] * d
    return 6 * multiplying + 12 * layers * cfg["context_length"] * d


# -- the command ---------------------------------------------------------------------------------------


# Each optimizer's defaults, tuned on the default model and split at the default run's length
# (benchmarks/README.md, "Tuning the default run"). Muon takes larger steps than AdamW and wants
# more weight decay; the AdamW part of the muon recipe (embeddings, head, norms) a smaller rate.
RECIPES = {
    "muon": {"lr": 2e-3, "muon_lr": 1e-2, "weight_decay": 0.3, "warmup_steps": 50},
    "adamw": {"lr": 3e-3, "weight_decay": 0.1, "warmup_steps": 100},
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None ("not set"), which the help text explains where it matters."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def _recipe_help(name: str) -> str:
    return "; ".join(f"{recipe[name]:g} with {opt}" for opt, recipe in RECIPES.items() if name in recipe)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m shared.train", description=__doc__.split("\n\n")[0],
                                formatter_class=_HelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", nargs="*", help="text files or folders of .txt files, or one token file written by "
                   "shared.token_file (chapter 9), read without loading it (default: the shipped Austen novels)")
    g.add_argument("--val-novel", default=DEFAULT_VAL_NOVEL, help="with the Austen default: the novel held out")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="with --data: the end of each file (or of the token file) held out")
    g.add_argument("--tokenizer", default="4096", help="'gpt2', or a vocabulary size to learn a BPE tokenizer")
    g = p.add_argument_group("model")
    g.add_argument("--config", help=f"start from a GPT-2 size: {', '.join(GPT2_CONFIGS)} (default: a small model)")
    g.add_argument("--n-layers", type=int)
    g.add_argument("--emb-dim", type=int)
    g.add_argument("--n-heads", type=int)
    g.add_argument("--context-length", type=int)
    g.add_argument("--drop-rate", type=float)
    g = p.add_argument_group("training")
    g.add_argument("--out", default="runs/austen", help="folder for the checkpoint and the log")
    g.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    g.add_argument("--minutes", type=float, default=10.0,
                   help="time budget: the number of steps is set from the speed of the first steps")
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
    g.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                   help="cosine: warmup then cosine decay (appendix D); constant: --lr throughout (chapter 5)")
    g.add_argument("--max-norm", type=float, default=1.0, help="clip the gradient norm to this (0: no clipping)")
    g.add_argument("--eval-every", type=int, default=200, help="steps between validation checks")
    g.add_argument("--eval-windows", type=int, default=64, help="validation windows per check")
    g.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    g.add_argument("--seed", type=int, default=123)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    g.add_argument("--compile", action="store_true", help="torch.compile the model (GPUs; slow to start)")
    g.add_argument("--prompt", default=DEFAULT_PROMPT, help="the start of the samples printed")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    g = p.add_argument_group("across processes (launch with torchrun --nproc_per_node=N -m shared.train ...)")
    g.add_argument("--distributed", choices=distributed.STRATEGIES,
                   help="ddp: a full copy per process, gradients averaged; fsdp: parameters, gradients and optimizer "
                        "state sharded (default under torchrun with more than one process: ddp)")
    g.add_argument("--dist-timeout", type=float, default=300.0,
                   help="seconds a process waits for the others before the run fails with an error")
    args = p.parse_args(argv)
    if args.muon_lr is not None and (args.optimizer != "muon" or args.muon_lr <= 0):
        p.error("--muon-lr sets Muon's peak learning rate: it needs --optimizer muon and a positive value, e.g. 1e-2")
    for name, value in RECIPES[args.optimizer].items():  # the optimizer's tuned values, where no flag set them
        if getattr(args, name) is None:
            setattr(args, name, value)
    check_distributed_args(p, args)
    for name in ("batch_size", "accumulation_steps", "eval_every", "eval_windows", "save_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_steps is not None and args.max_steps < 1:
        p.error("--max-steps must be at least 1")
    return args


def check_distributed_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in and check --distributed: ddp by default under a multi-process torchrun launch."""
    if args.distributed is None and distributed.launched_by_torchrun() and distributed.world_size() > 1:
        args.distributed = "ddp"
    if args.distributed and not distributed.launched_by_torchrun():
        parser.error(f"--distributed {args.distributed} needs several processes: launch with "
                     f"`torchrun --nproc_per_node=2 -m shared.train --distributed {args.distributed} ...`.")
    if args.distributed == "fsdp" and args.optimizer == "muon":
        # Under FSDP each process holds a slice of every matrix; Muon would orthogonalise the slices.
        parser.error("--distributed fsdp with --optimizer muon would orthogonalise each process's shard of a "
                     "matrix instead of the whole matrix: use --optimizer adamw with fsdp, or --distributed ddp.")
    if args.dist_timeout <= 0:
        parser.error("--dist-timeout must be positive, e.g. 300 (seconds).")


class _StateOnly:
    """Stands in for a model or optimizer whose full state was gathered: `save_checkpoint` only calls state_dict()."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = state


class Run:
    """One training run: its data, model, optimizer and position, which a checkpoint saves whole."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.started = time.perf_counter()
        self.out = Path(args.out)
        self.checkpoint_path = self.out / CHECKPOINT_NAME
        self.device = pick_device(args.device)
        self.strategy = args.distributed  # None: one process
        if self.strategy:
            self.device = distributed.setup(self.device.type, timeout_s=args.dist_timeout).device
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.evaluates = self.is_main or self.strategy == "fsdp"  # a sharded model needs every rank to run it
        self.precision = resolve_precision(args.precision, self.device)
        if self.checkpoint_path.exists() and not args.resume:
            raise FileExistsError(f"{self.checkpoint_path} already exists. Pass --resume to continue that run, "
                                  "or choose another --out folder.")
        if args.resume and not self.checkpoint_path.exists():
            raise FileNotFoundError(f"--resume, but there is no checkpoint at {self.checkpoint_path}.")

        saved = None
        if args.resume:
            _, metadata = read_checkpoint(self.checkpoint_path)
            saved = json.loads(metadata["extra"])
            self._check_same_run(saved["args"])

        token_file = token_file_named(args.data)
        if token_file is not None:  # chapter 9's uint16 token file: already tokenized, read through a memory map
            log(f"reading the token file {token_file.path} ({len(token_file):,} tokens, {token_file.num_documents:,} "
                f"documents; its own {token_file.tokenizer_name} tokenizer, --tokenizer is not used)")
            self.tokenizer = token_file.load_tokenizer()
            self.train_ids, self.val_ids = split_token_file(token_file, args.val_fraction)
            self.corpus = Corpus(train=[], val=held_out_documents(self.val_ids, self.tokenizer, token_file.eot_id,
                                                                  token_file.path.name))
        else:
            log(f"reading the text ({'the Austen novels' if not args.data else ', '.join(args.data)})")
            self.corpus = build_corpus(args.data, args.val_fraction, args.val_novel)
            log(self.corpus.describe())
            if saved:
                self.tokenizer = tokenizer_from_json(saved["tokenizer"])
            else:
                log(f"building the tokenizer ({args.tokenizer})")
                self.tokenizer = build_tokenizer(args.tokenizer, "\n".join(t for _, t in self.corpus.train))
            self.train_ids = encode_documents(self.corpus.train, self.tokenizer)
            self.val_ids = encode_documents(self.corpus.val, self.tokenizer)
        self.cfg = saved["config"] if saved else model_config(args, vocab_size_of(self.tokenizer))
        context = self.cfg["context_length"]
        for label, ids in (("training", self.train_ids), ("validation", self.val_ids)):
            if len(ids) <= context + 1:
                raise ValueError(f"the {label} text has {len(ids)} tokens, fewer than one context window of "
                                 f"{context} + 1. Add text, or lower --context-length.")
        log(f"tokens: {len(self.train_ids):,} for training, {len(self.val_ids):,} for validation")

        torch.manual_seed(args.seed)
        self.model = GPTModel(self.cfg)
        init_gpt2_style(self.model)
        self.model.to(self.device)
        self.num_params = sum(p.numel() for p in self.model.parameters())
        if self.strategy == "fsdp":
            distributed.wrap_model(self.model, "fsdp", self.device)  # shards in place: the optimizer below holds shards
        self.optimizer = self.new_optimizer()
        self.forward_model = self.model
        if self.strategy == "ddp":  # the wrapper trains; self.model (plain names) evaluates and saves
            self.forward_model = distributed.wrap_model(self.model, "ddp", self.device)
        if args.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.step, self.total_steps, self.tokens_seen, self.train_seconds = 0, args.max_steps, 0, 0.0
        self.refit_at = None  # the step at which a time-budgeted run checks its step count again
        self.history: list[dict] = []
        if saved:
            checkpoint = self.load_saved()
            self.step = checkpoint.step
            self.total_steps = saved["total_steps"]
            self.tokens_seen = saved["tokens_seen"]
            self.train_seconds = saved["train_seconds"]
            self.history = saved["history"]
            log(f"resumed at step {self.step:,} of {self.total_steps:,}")
            if saved.get("world_size", 1) != self.world_size:
                log(f"the run was saved by {saved.get('world_size', 1)} process(es), now {self.world_size}: "
                    "training continues with a different global batch")

    def load_saved(self):
        """Read the checkpoint into the model and optimizer; under FSDP, each rank keeps its shards."""
        if self.strategy != "fsdp":
            return load_checkpoint(self.checkpoint_path, self.model, self.optimizer, restore_rng=True)
        full_model, full_optimizer = GPTModel(self.cfg), _StateOnly({})
        checkpoint = load_checkpoint(self.checkpoint_path, full_model, full_optimizer, restore_rng=True)
        distributed.load_full_state_dicts(self.model, self.optimizer, full_model.state_dict(), full_optimizer.state)
        return checkpoint

    def new_optimizer(self):
        """A fresh optimizer for the model: no decay on biases and norms; Muon on request."""
        a = self.args
        return make_optimizer(self.model, a.optimizer, lr=a.lr, weight_decay=a.weight_decay, device=self.device,
                              muon_lr=a.muon_lr)

    def _check_same_run(self, saved_args: dict) -> None:
        """Resuming with other data or model settings would silently train something else: refuse."""
        keys = ("data", "val_novel", "val_fraction", "tokenizer", "config", "n_layers", "emb_dim", "n_heads",
                "context_length", "seed", "batch_size", "accumulation_steps", "schedule", "optimizer")
        saved_args = {"optimizer": "adamw", **saved_args}  # runs saved before --optimizer existed used AdamW
        changed = [f"--{k.replace('_', '-')}: saved {saved_args.get(k)!r}, now {getattr(self.args, k)!r}"
                   for k in keys if saved_args.get(k) != getattr(self.args, k)]
        if changed:
            raise ValueError("--resume with settings that differ from the saved run's:\n  " + "\n  ".join(changed)
                             + "\nResume with the original settings, or start a new run in another --out folder.")

    def save(self) -> None:
        extra = {"args": vars(self.args), "tokenizer": tokenizer_to_json(self.tokenizer), "config": self.cfg,
                 "total_steps": self.total_steps, "tokens_seen": self.tokens_seen,
                 "train_seconds": self.train_seconds, "history": self.history, "world_size": self.world_size}
        model, optimizer = self.model, self.optimizer
        if self.strategy == "fsdp":  # every rank sends its shards; rank 0 gets the whole state
            model_state, optimizer_state = distributed.full_state_dicts(self.model, self.optimizer)
            model, optimizer = _StateOnly(model_state), _StateOnly(optimizer_state)
        if self.is_main:
            save_checkpoint(self.checkpoint_path, model, optimizer, step=self.step, config=self.cfg, extra=extra)

    def micro_batches(self, step: int):
        """This rank's micro-batches: rank r draws the stream's micro-batches r*A ... r*A + A - 1 (A = accumulation).

        So N processes with accumulation A train on exactly the batches one process draws with
        accumulation N x A, and rank 0 of a distributed run draws what a single process would.
        """
        a = self.args
        first = self.rank * a.accumulation_steps
        return [tuple(t.to(self.device) for t in sample_batch(self.train_ids, a.batch_size, self.cfg["context_length"],
                                                               a.seed, step, micro))
                for micro in range(first, first + a.accumulation_steps)]

    def one_step(self) -> float:
        a = self.args
        if a.schedule == "constant":  # the book's chapter-5 loop: one learning rate throughout
            lr = a.lr
        else:  # appendix D: linear warmup, then cosine decay to --min-lr
            lr = lr_at_step(self.step, peak_lr=a.lr, warmup_steps=min(a.warmup_steps, self.total_steps - 1),
                            total_steps=self.total_steps, initial_lr=a.lr / 100, min_lr=a.min_lr)
        loss, _ = train_step(self.forward_model, self.micro_batches(self.step), self.optimizer, self.device,
                             lr=lr, max_norm=a.max_norm or None, precision=self.precision)
        self.step += 1
        self.tokens_seen += self.world_size * a.batch_size * a.accumulation_steps * self.cfg["context_length"]
        return distributed.all_reduce_mean(loss, self.device)  # the mean over every rank's batches

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
        self.optimizer = self.new_optimizer()
        torch.set_rng_state(rng)
        self.step, self.tokens_seen = 0, 0
        # Each rank timed its own steps: all follow rank 0's count.
        self.total_steps = distributed.broadcast_int(self.steps_in_budget(seconds_per_step), self.device)
        # Late enough that the first, slower steps weigh little; early enough that the decay has barely begun.
        self.refit_at = min(max(self.args.warmup_steps, 200), self.total_steps // 2)
        log(f"{seconds_per_step * 1000:.0f} ms per step -> {self.total_steps:,} steps in {self.args.minutes:g} min")

    def steps_in_budget(self, seconds_per_step: float) -> int:
        """How many steps in all fit what is left of --minutes, with validation checks and final scoring."""
        # A forward pass costs about a third of a training step per token.
        a = self.args
        tokens_per_step = a.batch_size * a.accumulation_steps * self.cfg["context_length"]
        forward_seconds_per_token = seconds_per_step / tokens_per_step / 3
        eval_seconds_per_step = a.eval_windows * self.cfg["context_length"] * forward_seconds_per_token / a.eval_every
        remaining = a.minutes * 60 - (time.perf_counter() - self.started)
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
            torch.manual_seed(self.args.seed)
            was_training = self.model.training
            self.model.eval()
            idx = text_to_token_ids(self.args.prompt, self.tokenizer).to(self.device)
            out = generate(self.model, idx, max_new_tokens, self.cfg["context_length"], temperature=0.8, top_k=40)
            self.model.train(was_training)
        return token_ids_to_text(out, self.tokenizer)

    def validation_loss(self, max_windows: int | None) -> float:
        x, y = eval_windows(self.val_ids, self.cfg["context_length"], max_windows)
        return evaluate_loss(self.model, x, y, self.device, self.args.batch_size, self.precision)

    def train(self) -> None:
        from tqdm.auto import tqdm

        a = self.args
        if self.total_steps is None:
            self.calibrate_steps()
        log(f"model: {self.num_params / 1e6:.2f}M parameters, {self.cfg['n_layers']} layers, "
            f"{self.cfg['emb_dim']} wide, context {self.cfg['context_length']}; device {self.device}, "
            f"{self.precision}; {self.total_steps:,} steps of {a.batch_size * a.accumulation_steps} x "
            f"{self.cfg['context_length']} tokens, {a.optimizer}, peak lr {a.lr:g}"
            + (f" (Muon's matrices {a.muon_lr:g})" if a.muon_lr is not None else ""))
        if self.strategy:
            log(f"{self.strategy} across {self.world_size} processes: each draws its own batches, so a step sees "
                f"{self.world_size} x {a.batch_size * a.accumulation_steps} = "
                f"{self.world_size * a.batch_size * a.accumulation_steps} sequences")
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", disable=a.no_progress or not self.is_main,
                   dynamic_ncols=True)
        flops = flops_per_token(self.cfg)
        try:
            while self.step < self.total_steps:
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
                tokens_per_s = self.tokens_seen / max(self.train_seconds, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
                if (self.step % a.eval_every == 0 or self.step == self.total_steps) and self.evaluates:
                    val_loss = self.validation_loss(a.eval_windows)
                    self.history.append({"step": self.step, "tokens": self.tokens_seen, "train_loss": loss,
                                         "val_loss": val_loss, "tokens_per_s": tokens_per_s,
                                         "gflops_per_s": flops * tokens_per_s / 1e9})
                    if self.is_main:
                        bar.write(f"step {self.step:>6,}  train loss {loss:.3f}  val loss {val_loss:.3f}  "
                                  f"{tokens_per_s:,.0f} tokens/s")
                if self.step % a.save_every == 0:
                    self.save()
                if a.stop_at is not None and self.step >= a.stop_at and self.step < self.total_steps:
                    bar.close()
                    self.save()
                    log(f"stopped at step {self.step:,} (--stop-at): continue with the same command plus --resume.")
                    return
        except KeyboardInterrupt:
            bar.close()
            self.save()
            log(f"interrupted at step {self.step:,}: saved {self.checkpoint_path}. Continue with the same "
                "command plus --resume.")
            raise SystemExit(130) from None
        bar.close()
        self.save()
        self.report()

    def report(self) -> None:
        """Score the whole held-out text (bits per byte compare across tokenizers), save a summary, sample."""
        if not self.evaluates:
            return
        scores = [evaluate_text(self.model, text, self.tokenizer, self.device, batch_size=self.args.batch_size)
                  for _, text in self.corpus.val]
        nll, tokens, num_bytes = (sum(getattr(s, f) for s in scores) for f in ("nll_nats", "num_tokens", "num_bytes"))
        val_loss = nll / tokens
        tokens_per_s = self.tokens_seen / max(self.train_seconds, 1e-9)
        summary = {"step": self.step, "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
                   "val_bits_per_byte": bits_per_byte(nll, num_bytes), "val_tokens": tokens, "val_bytes": num_bytes,
                   "tokens_per_s": tokens_per_s, "train_seconds": self.train_seconds,
                   "tokens_seen": self.tokens_seen, "flops_per_token": flops_per_token(self.cfg),
                   "wall_seconds": time.perf_counter() - self.started, "parameters": self.num_params,
                   "config": self.cfg, "args": vars(self.args)}
        sample = self.sample(120)
        if not self.is_main:
            return
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        log(f"held-out text: loss {val_loss:.3f} nats/token, perplexity {math.exp(val_loss):.1f}, "
            f"{summary['val_bits_per_byte']:.3f} bits per byte; trained {self.train_seconds / 60:.1f} min at "
            f"{tokens_per_s:,.0f} tokens/s")
        log(f"checkpoint: {self.checkpoint_path}  (talk to it: python -m shared.generate {self.checkpoint_path})")
        print("\nsample:\n" + sample)


def log(message: str) -> None:
    if distributed.rank() == 0:  # one process prints for all
        print(f"[train] {message}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        run = Run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    run.train()
    distributed.shutdown()  # wait for every process, then leave the group (nothing to do in one process)


if __name__ == "__main__":
    main()
