"""Benchmark `shared.transformer.GPTModel` against Hugging Face's `GPT2LMHeadModel`.

Two measurements, run side by side in one process and printed as Markdown tables:

1. Training throughput: one step is forward, cross-entropy loss, backward and an AdamW update, in
   fp32 with dropout 0, on the same config, the same initial weights and the same batch, for
   - Hugging Face `transformers`' `GPT2LMHeadModel` (the reference), built with
     `tie_word_embeddings=False` so that it has exactly our parameters (GPTModel's `out_head` is a
     separate matrix, not the token embedding);
   - ours, `GPTModel` with PyTorch's fused attention (`use_sdpa=True`, the default);
   - ours with the book's explicit attention (`use_sdpa=False`).
   At two shapes: GPT-2 124M with a batch of 1 x 256 tokens, and a 4-layer, 256-wide model (GPT-2's
   vocabulary of 50,257) with a batch of 8 x 256. The models take turns, one step each per round,
   and the best step after warm-up counts. Peak memory is measured in a fresh subprocess per model.

2. Generation: 200 new tokens, greedy, batch 1, from the book's prompt "Every effort moves you",
   with GPT-2 124M's shapes and random weights loaded into both models by `load_weights_into_gpt`:
   `generate_text_cached` (ours, with a key-value cache), `generate_text_simple` (the book's loop,
   which reruns the whole context for every token) and `GPT2LMHeadModel.generate(do_sample=False,
   use_cache=True)`. For comparison, two more rows separate the model from the kernel: ours with
   `fast_cpu_linear` (oneDNN's linear kernel, `shared/fast_linear.py`) switched off, and transformers
   run inside it. All must produce identical tokens (asserted).

Every number printed is measured in this run. Run from the repository root:
    python benchmarks/bench_gpt.py  [--steps N] [--warmup N] [--repeats N] [--no-memory] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import shared.transformer  # noqa: E402
from shared.fast_linear import fast_cpu_linear  # noqa: E402
from shared.tokenization import get_gpt2_tokenizer  # noqa: E402
from shared.transformer import GPTModel, generate_text_cached, generate_text_simple  # noqa: E402
from shared.weights import gpt2_config, load_weights_into_gpt  # noqa: E402

TRAIN_TARGET = 1.0  # ours trains at least as many tokens/s as transformers
CACHE_TARGET = 5.0  # generate_text_cached at least 5x faster than generate_text_simple
GENERATE_TARGET = 1.0  # generate_text_cached at least as fast as transformers' generate
PROMPT = "Every effort moves you"


@dataclass(frozen=True)
class TrainShape:
    """A model config (GPTModel's keys) and the batch it trains on."""

    name: str
    cfg: dict
    batch: int
    seq_len: int

    def describe(self) -> str:
        c = self.cfg
        return (f"{self.name}: {c['n_layers']} layers, emb_dim {c['emb_dim']}, {c['n_heads']} heads, "
                f"vocab {c['vocab_size']:,}; batch {self.batch} x {self.seq_len} tokens")


SHAPES = [
    TrainShape("GPT-2 124M", gpt2_config("gpt2"), batch=1, seq_len=256),
    TrainShape("small", {"vocab_size": 50257, "context_length": 256, "emb_dim": 256, "n_heads": 4, "n_layers": 4,
                         "drop_rate": 0.0, "qkv_bias": True}, batch=8, seq_len=256),
]
# name -> (description, role); "ours" rows are held to the target
MODELS = {
    "transformers": ("transformers `GPT2LMHeadModel` (attn_implementation='sdpa', untied head)", "reference"),
    "ours": ("ours: `GPTModel`, use_sdpa=True", "ours"),
    "ours-explicit": ("ours: `GPTModel`, use_sdpa=False (the book's attention)", "other"),
}


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# Models and one training step
# ---------------------------------------------------------------------------------------------


def hf_model(cfg: dict, tie: bool, seed: int = 0):
    """A seeded, randomly initialised GPT2LMHeadModel of GPTModel config `cfg`, dropout off."""
    from transformers import GPT2Config, GPT2LMHeadModel  # imported here: the memory child of ours skips it

    config = GPT2Config(vocab_size=cfg["vocab_size"], n_positions=cfg["context_length"], n_embd=cfg["emb_dim"],
                        n_layer=cfg["n_layers"], n_head=cfg["n_heads"], embd_pdrop=0.0, resid_pdrop=0.0,
                        attn_pdrop=0.0, tie_word_embeddings=tie, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def build(kind: str, cfg: dict, device: torch.device, weights_from=None) -> torch.nn.Module:
    """One of MODELS, in training mode. Ours gets `weights_from`'s weights (a GPT2LMHeadModel) if given."""
    if kind == "transformers":
        return hf_model(cfg, tie=False).to(device).train()
    torch.manual_seed(0)
    model = GPTModel({**cfg, "use_sdpa": kind == "ours"})
    if weights_from is not None:
        load_weights_into_gpt(model, weights_from.state_dict())
    return model.to(device).train()


def logits_of(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Both models' logits: GPTModel returns them, GPT2LMHeadModel wraps them in an output object."""
    return model(inputs) if isinstance(model, GPTModel) else model(input_ids=inputs).logits


def batch_of(shape: TrainShape, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The same seeded random token ids for every model: inputs and next-token targets."""
    ids = torch.randint(0, shape.cfg["vocab_size"], (shape.batch, shape.seq_len + 1),
                        generator=torch.Generator().manual_seed(1234))
    return ids[:, :-1].to(device), ids[:, 1:].to(device)


def make_step(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[], float]:
    """A function that runs one training step (PyTorch's default AdamW) and returns the loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(logits_of(model, inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


@dataclass(frozen=True)
class TrainResult:
    kind: str
    params: int
    step_seconds: list[float]  # the timed steps, after warm-up
    first_loss: float
    memory_mib: float | None  # peak memory of training, see `measure_memory`

    @property
    def best(self) -> float:
        return min(self.step_seconds)


def run_training(shape: TrainShape, device: torch.device, warmup: int, steps: int) -> dict[str, TrainResult]:
    """Train the three models on `shape`, taking turns step by step; check they compute the same loss."""
    log(f"training {shape.describe()}: building the models")
    models = {"transformers": build("transformers", shape.cfg, device)}
    for kind in ("ours", "ours-explicit"):
        models[kind] = build(kind, shape.cfg, device, weights_from=models["transformers"])
    inputs, targets = batch_of(shape, device)
    step_fns = {kind: make_step(model, inputs, targets) for kind, model in models.items()}
    times: dict[str, list[float]] = {kind: [] for kind in models}
    first_loss: dict[str, float] = {}

    order = list(models)
    for round_ in range(warmup + steps):
        log(f"  round {round_ + 1}/{warmup + steps}" + (" (warm-up)" if round_ < warmup else ""))
        for kind in order:
            synchronize(device)
            start = time.perf_counter()
            loss = step_fns[kind]()
            synchronize(device)
            if round_ >= warmup:
                times[kind].append(time.perf_counter() - start)
            first_loss.setdefault(kind, loss)
        order = order[1:] + order[:1]  # rotate, so that no model always runs right after the same one

    reference = first_loss["transformers"]
    for kind, loss in first_loss.items():  # same weights, same batch: the same loss
        assert abs(loss - reference) < 1e-4 * abs(reference), f"{kind}'s first loss {loss} != transformers' {reference}"
    results = {kind: TrainResult(kind, sum(p.numel() for p in model.parameters()), times[kind], first_loss[kind], None)
               for kind, model in models.items()}
    del models, step_fns
    gc.collect()
    return results


# ---------------------------------------------------------------------------------------------
# Peak memory, in a fresh process per model
# ---------------------------------------------------------------------------------------------


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak so far (VmHWM), in MiB, from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # the value is in kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(shape_index: int, kind: str, device_name: str, steps: int = 2) -> None:
    """Run in a fresh interpreter: build one model and train `steps` steps; print its memory as JSON.

    CPU: the peak resident set size (VmHWM) minus the resident size just before the model was built,
    when torch (and, for the reference, transformers) were already imported. So it counts what
    training needs: weights, gradients, AdamW's two moments, activations and temporaries, plus memory
    the allocator keeps rather than returns. CUDA: torch.cuda.max_memory_allocated, the most memory
    held by tensors at once.
    """
    device = torch.device(device_name)
    shape = SHAPES[shape_index]
    if kind == "transformers":
        import transformers  # noqa: F401  (imported before the baseline, like torch)
    inputs, targets = batch_of(shape, device)
    baseline = rss_mib() if device.type == "cpu" else 0.0
    step = make_step(build(kind, shape.cfg, device), inputs, targets)
    for _ in range(steps):
        step()
    synchronize(device)
    peak = rss_mib("VmHWM") - baseline if device.type == "cpu" else torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps({"peak_mib": peak}))


def measure_memory(shape_index: int, kind: str, device: torch.device) -> float | None:
    """Peak memory of training model `kind` at SHAPES[shape_index], from a fresh subprocess."""
    if device.type == "cpu" and not Path("/proc/self/status").exists():
        return None  # not Linux: no VmHWM to read
    log(f"  memory: {kind} in a fresh process")
    result = subprocess.run([sys.executable, __file__, "--memory-child", str(shape_index), kind, str(device)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateResult:
    name: str
    role: str
    seconds: list[float]

    @property
    def best(self) -> float:
        return min(self.seconds)


def run_generation(device: torch.device, new_tokens: int, repeats: int, simple_repeats: int) -> list[GenerateResult]:
    """Greedy generation with GPT-2 124M's shapes: ours (cached and simple) and transformers'."""
    log(f"generation: {new_tokens} new tokens, building GPT-2 124M with random weights")
    hf = hf_model(gpt2_config("gpt2"), tie=True).to(device).eval()  # GPT-2's own layout, head tied
    gpt = GPTModel(gpt2_config("gpt2"))
    load_weights_into_gpt(gpt, hf.state_dict())
    gpt = gpt.to(device).eval()
    prompt = torch.tensor([get_gpt2_tokenizer().encode(PROMPT)], device=device)
    context = gpt.cfg["context_length"]

    def hf_generate(n: int) -> torch.Tensor:
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                               do_sample=False, use_cache=True, pad_token_id=0)

    runs = {  # key: (table label, role, timed runs, whether it gets a warm-up run, function of the token count)
        "transformers": ("transformers `generate(do_sample=False, use_cache=True)`", "reference", repeats, True,
                         hf_generate),
        "cached": ("ours: `generate_text_cached` (KV cache)", "ours", repeats, True,
                   lambda n: generate_text_cached(gpt, prompt, n, context)),
        # Two rows that split the difference between the model and the kernel: ours on MKL's kernel,
        # and transformers inside fast_cpu_linear (which reaches only its nn.Linear head, not Conv1D).
        "cached_mkl": ("ours: `generate_text_cached` with `fast_cpu_linear` switched off", "info", repeats, True,
                       lambda n: without_fast_linear(lambda: generate_text_cached(gpt, prompt, n, context))),
        "transformers_onednn": ("transformers `generate` inside `fast_cpu_linear()`", "info", repeats, True,
                                lambda n: with_fast_linear(lambda: hf_generate(n))),
        # The slow one, run last: the model is warm by then, so it gets no warm-up run of its own.
        "simple": ("ours: `generate_text_simple` (the book's loop, no cache)", "other", simple_repeats, False,
                   lambda n: generate_text_simple(gpt, prompt, n, context)),
    }
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    outputs: dict[str, torch.Tensor] = {}
    for round_ in range(-1, max(repeats, simple_repeats)):  # round -1: a short warm-up (kernels, allocator)
        for key, (_, _, timed, warm_up, run) in runs.items():
            if round_ >= timed or (round_ < 0 and not warm_up):
                continue
            log(f"  {key} " + ("warm-up" if round_ < 0 else f"run {round_ + 1}/{timed}"))
            gc.collect()
            synchronize(device)
            start = time.perf_counter()
            out = run(min(new_tokens, 20) if round_ < 0 else new_tokens)
            synchronize(device)
            if round_ >= 0:
                seconds[key].append(time.perf_counter() - start)
                outputs[key] = out.cpu()

    expected = outputs["transformers"]
    assert expected.shape == (1, prompt.shape[1] + new_tokens), f"transformers stopped early: {expected.shape}"
    for key, out in outputs.items():
        where = first_difference(out, expected)
        assert torch.equal(out, expected), f"{key}'s tokens differ from transformers' at position {where}"
    return [GenerateResult(name, role, seconds[key]) for key, (name, role, *_) in runs.items()]


def without_fast_linear(run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run `run()` with `generate_text_cached`'s oneDNN context replaced by a no-op."""
    original = shared.transformer.fast_cpu_linear
    shared.transformer.fast_cpu_linear = contextlib.nullcontext
    try:
        return run()
    finally:
        shared.transformer.fast_cpu_linear = original


def with_fast_linear(run: Callable[[], torch.Tensor]) -> torch.Tensor:
    with fast_cpu_linear():
        return run()


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """The first position where two (1, n) token tensors differ."""
    for i, (x, y) in enumerate(zip(a[0].tolist(), b[0].tolist())):
        if x != y:
            return i
    return None


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table; columns after the first are right-aligned."""
    align = ["---" if i < 1 else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, align, *rows])


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def training_table(shape: TrainShape, results: dict[str, TrainResult]) -> str:
    tokens = shape.batch * shape.seq_len
    reference = results["transformers"].best
    rows = []
    for kind, result in results.items():
        name, role = MODELS[kind]
        ratio = reference / result.best  # a ratio of throughputs
        memory = "–" if result.memory_mib is None else f"{result.memory_mib:,.0f}"
        rows.append([name, f"{result.params:,}", str(len(result.step_seconds)), f"{result.best:.3f}",
                     f"{statistics.median(result.step_seconds):.3f}", f"{tokens / result.best:,.0f}",
                     "1.00x (reference)" if role == "reference" else f"{ratio:.2f}x", memory,
                     pass_fail(ratio >= TRAIN_TARGET) if role == "ours" else ""])
    header = ["model", "parameters", "steps", "best step (s)", "median step (s)", "tokens/s (best)",
              "tokens/s / transformers'", "peak memory (MiB)", f"ours at least {TRAIN_TARGET:g}x"]
    return markdown_table(header, rows)


def generation_table(results: list[GenerateResult], new_tokens: int) -> str:
    by_role = {result.role: result for result in results}
    rows = []
    for result in results:
        vs_hf = by_role["reference"].best / result.best
        vs_simple = by_role["other"].best / result.best
        target = ""
        if result.role == "ours":
            target = (f"{pass_fail(vs_simple >= CACHE_TARGET)} (>= {CACHE_TARGET:g}x simple), "
                      f"{pass_fail(vs_hf >= GENERATE_TARGET)} (>= {GENERATE_TARGET:g}x transformers)")
        rows.append([result.name, str(len(result.seconds)), f"{result.best:.3f}", f"{new_tokens / result.best:.1f}",
                     "1.00x (reference)" if result.role == "reference" else f"{vs_hf:.2f}x",
                     f"{vs_simple:.2f}x", target if result.role != "info" else "(for comparison)"])
    header = ["generator", "runs", "best time (s)", "new tokens/s", "speed / transformers'",
              "speed / generate_text_simple's", "targets"]
    return markdown_table(header, rows)


def machine_info(device: torch.device, load_before: str) -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs ({usable} usable by this process)",
        f"- device: {device} ({name})",
        f"- Python {platform.python_version()}, torch {torch.__version__}, transformers {version('transformers')}",
    ]
    if hasattr(os, "getloadavg"):
        lines.append(f"- load average (1, 5, 15 min) before: {load_before}; after: {load_average()} "
                     "(other work on a shared machine slows every row alike, but adds noise)")
    return "\n".join(lines)


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark GPTModel against transformers' GPT2LMHeadModel.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps per model (default 1)")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per model (default 6)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed generations by ours (cached) and transformers (default 3)")
    parser.add_argument("--simple-repeats", type=int, default=1,
                        help="timed generations by generate_text_simple, the slow one (default 1)")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-child", nargs=3, metavar=("SHAPE", "MODEL", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.simple_repeats) < 1 or args.warmup < 0:
        parser.error("--steps, --repeats and --simple-repeats must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        shape_index, kind, device_name = args.memory_child
        memory_child(int(shape_index), kind, device_name)
        return
    device = torch.device(args.device)
    load_before = load_average()
    started = time.perf_counter()

    training = []
    for i, shape in enumerate(SHAPES):
        results = run_training(shape, device, args.warmup, args.steps)
        if not args.no_memory:
            results = {kind: replace(result, memory_mib=measure_memory(i, kind, device))
                       for kind, result in results.items()}
        training.append((shape, results))
    generation = run_generation(device, args.new_tokens, args.repeats, args.simple_repeats)

    memory_note = ("peak memory: each model trained 2 steps in a fresh process; on CPU the peak resident set "
                   "size (VmHWM) minus the resident size after imports, so weights, gradients, AdamW state, "
                   "activations and allocator caching all count"
                   if device.type == "cpu" else "peak memory: torch.cuda.max_memory_allocated over 2 steps")
    lines = ["## GPT model benchmarks", "", machine_info(device, load_before), "",
             f"- total time: {time.perf_counter() - started:.0f} s", ""]
    for shape, results in training:
        floor = results["ours"].params * 16 / 2**20
        lines += [f"### Training, {shape.describe()}", "",
                  training_table(shape, results), "",
                  f"fp32, dropout 0, AdamW (PyTorch's default implementation), the same initial weights and batch "
                  f"(first losses equal: {results['ours'].first_loss:.4f}); best of {args.steps} steps after "
                  f"{args.warmup} warm-up steps, the models taking turns. Weights, gradients and AdamW's two "
                  f"moments alone take {floor:,.0f} MiB; {memory_note}.", ""]
    lines += [f"### Generation, GPT-2 124M shapes (random weights), {args.new_tokens} new tokens, greedy, batch 1, "
              f"prompt {PROMPT!r}", "",
              generation_table(generation, args.new_tokens), "",
              "All produced identical tokens (asserted). Ours (cached) and transformers take turns, best of "
              f"{args.repeats} runs after one untimed warm-up run each (20 tokens); `generate_text_simple` runs last "
              f"({args.simple_repeats} run{'s' if args.simple_repeats > 1 else ''}), on the already warm model. "
              "Times include the prompt's forward pass.",
              ""]
    lines += ["### Targets", ""]
    for shape, results in training:
        ratio = results["transformers"].best / results["ours"].best
        lines.append(f"- training, {shape.name}: ours at least {TRAIN_TARGET:g}x transformers' tokens/s: "
                     f"{pass_fail(ratio >= TRAIN_TARGET)} ({ratio:.2f}x)")
    best = {r.role: r.best for r in generation}
    lines.append(f"- generation: generate_text_cached at least {CACHE_TARGET:g}x generate_text_simple: "
                 f"{pass_fail(best['other'] / best['ours'] >= CACHE_TARGET)} ({best['other'] / best['ours']:.2f}x)")
    lines.append(f"- generation: generate_text_cached at least {GENERATE_TARGET:g}x transformers' generate: "
                 f"{pass_fail(best['reference'] / best['ours'] >= GENERATE_TARGET)} "
                 f"({best['reference'] / best['ours']:.2f}x)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
