"""The GPU rows of issue 19, measured side by side in one run and printed as tables of ratios.

1. Training step, GPT-2 124M shape, bf16 autocast, `torch.compile`, fused AdamW, batch 16 x 1,024:
   the training command (`python -m shared.train`, head tied, AdamW) against a nanoGPT-shaped
   reference, both in fresh processes taking turns (`bench_train_step.py --device cuda`'s runs).
2. Decoding, GPT-2 124M shape with random weights, greedy, batch 1, 200 new tokens:
   `transformers`' `generate(use_cache=True)` against `generate_text_cached`, which on CUDA runs the
   fixed-shape cache with one compiled step (`shared/static_decode.py`, CUDA graphs); beside them the
   same with chapter 4's dynamic cache and the book's `generate_text_simple`. All must give the
   same tokens (asserted). The compiled step's compilation is timed apart, in a warm-up run.

Run from the repository root on a machine with a CUDA GPU (a few minutes):
    python benchmarks/bench_gpu.py [--new-tokens 200] [--repeats 5] [--steps 30] [--skip-training]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_train_step  # noqa: E402
from bench_gpt import PROMPT, first_difference, hf_model, markdown_table  # noqa: E402

import shared.transformer  # noqa: E402
from shared.corpus import load_novel  # noqa: E402
from shared.tokenization import get_gpt2_tokenizer  # noqa: E402
from shared.transformer import GPTModel, generate_text_cached, generate_text_simple  # noqa: E402
from shared.weights import gpt2_config, load_weights_into_gpt  # noqa: E402

DECODE_TARGET = 5.0  # generate_text_cached at least 5x transformers' generate


def timed(run: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = run()
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def dynamic_cache(run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run with `decode_with_kv_cache`'s hand-over to the fixed-shape decoder switched off."""
    original = shared.transformer.static_decoding_applies
    shared.transformer.static_decoding_applies = lambda model, pad_lengths: False
    try:
        return run()
    finally:
        shared.transformer.static_decoding_applies = original


def decoding(new_tokens: int, repeats: int) -> str:
    device = torch.device("cuda")
    hf = hf_model(gpt2_config("gpt2"), tie=True).to(device).eval()
    gpt = GPTModel(gpt2_config("gpt2"))
    load_weights_into_gpt(gpt, hf.state_dict())
    gpt = gpt.to(device).eval()
    prompt = torch.tensor([get_gpt2_tokenizer().encode(PROMPT)], device=device)
    context = gpt.cfg["context_length"]

    def hf_generate() -> torch.Tensor:
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                               do_sample=False, use_cache=True, pad_token_id=0)

    runs = {
        "transformers `generate(use_cache=True)`": hf_generate,
        "ours: `generate_text_cached` (fixed-shape cache, compiled step, CUDA graphs)":
            lambda: generate_text_cached(gpt, prompt, new_tokens, context),
        "ours: the same with chapter 4's dynamic cache": lambda: dynamic_cache(
            lambda: generate_text_cached(gpt, prompt, new_tokens, context)),
        "ours: `generate_text_simple` (no cache)": lambda: generate_text_simple(gpt, prompt, new_tokens, context),
    }
    warmup = {name: timed(run)[0] for name, run in runs.items()}  # compilation, kernels, allocator
    seconds = {name: [] for name in runs}
    outputs = {}
    for _ in range(repeats):
        for name, run in runs.items():  # taking turns
            s, out = timed(run)
            seconds[name].append(s)
            outputs[name] = out.cpu()
    expected = outputs[next(iter(runs))]
    assert expected.shape[1] == prompt.shape[1] + new_tokens, f"transformers stopped early: {expected.shape}"
    for name, out in outputs.items():
        where = first_difference(out, expected)
        assert torch.equal(out, expected), f"{name}: tokens differ from transformers' at position {where}"

    reference = statistics.median(seconds[next(iter(runs))])
    rows = []
    for i, (name, times) in enumerate(seconds.items()):
        median = statistics.median(times)
        passed = "PASS" if reference / median >= DECODE_TARGET else "FAIL"
        target = f"{passed} (>= {DECODE_TARGET:g}x)" if i == 1 else ""
        rows.append([name, f"{warmup[name]:.2f}", f"{median:.3f}", f"{new_tokens / median:,.0f}",
                     "1.00x (reference)" if i == 0 else f"{reference / median:.2f}x", target])
    return markdown_table(["decoder", "first run (s, compilation included)", "median run (s)", "new tokens/s",
                           "speed / transformers'", "target"], rows)


def training(steps: int, repeats: int) -> str:
    shape = bench_train_step.SHAPES["cuda"][0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "emma.txt"
        text_file.write_text(load_novel("emma"), encoding="utf-8")
        ref, ours = [], []
        for i in range(repeats):
            ref.append(bench_train_step.reference(shape, "cuda", steps))
            ours.append(bench_train_step.ours(shape, "cuda", steps, text_file, Path(tmp) / f"run{i}"))
    r = max(ref, key=lambda x: x["tokens_per_s"])
    o = max(ours, key=lambda x: x["tokens_per_s"])
    rows.append(["nanoGPT-shaped reference", f"{r['parameters']:,}", f"{r['tokens_per_s']:,.0f}",
                 f"{r['warmup_seconds']:.1f}", f"{r['peak_memory_mib']:,.0f}", "1.00x (reference)", ""])
    ratio = o["tokens_per_s"] / r["tokens_per_s"]
    rows.append(["ours: `python -m shared.train --compile --precision bf16 --tie-weights --optimizer adamw`",
                 f"{o['parameters']:,}", f"{o['tokens_per_s']:,.0f}", f"{o['warmup_seconds']:.1f}",
                 f"{o['peak_memory_mib']:,.0f}", f"{ratio:.2f}x",
                 f"{'PASS' if ratio >= bench_train_step.TARGET else 'FAIL'} (>= 1.0x, memory <= reference's: "
                 f"{'yes' if o['peak_memory_mib'] <= r['peak_memory_mib'] else 'no'})"])
    return markdown_table(["training step, " + shape.name, "parameters", "tokens/s (steady, best run)",
                           "warm-up s (compilation)", "peak MiB", "ratio", "target"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="timed decoding runs per decoder")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per run")
    parser.add_argument("--train-repeats", type=int, default=2)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU; PyTorch sees none here.")
    if min(args.new_tokens, args.repeats, args.steps, args.train_repeats) < 1:
        parser.error("--new-tokens, --repeats, --steps and --train-repeats must be at least 1.")
    print(f"## GPU: {torch.cuda.get_device_name()}")
    print()
    print(f"- date: {datetime.date.today().isoformat()}; {platform.platform()}; torch {torch.__version__}")
    print()
    print(decoding(args.new_tokens, args.repeats), flush=True)
    if not args.skip_training:
        print()
        print(training(args.steps, args.train_repeats))


if __name__ == "__main__":
    main()
