"""How much faster are chapter 7's answers when prompts of different lengths share a batch?

Chapter 7 answers the test split (`split_data(load_instruction_data())`) greedily with the shipped
Austen GPT (`load_austen_gpt()`: 4 layers, 128 wide, context 128), `MAX_NEW_TOKENS = 20`, on the
CPU. Three ways, each giving the same answers (asserted):

1. **one at a time**, as the book does: `generate_responses(..., batch_size=1)`;
2. **equal-length groups**: the project's former way, prompts with the same number of tokens in one
   batch (no padding needed), up to 32 per batch, via chapter 5's `generate`;
3. **padded batches**: `generate_responses(..., batch_size=32)`, prompts sorted by length and
   left-padded into batches of 32 by `generate_batch` (`shared/pretraining.py`).

Each way runs `--repeats` times (3 by default) after one warm-up run; the median wall-clock time
counts. Run from the repository root (about a minute on 2 cores):
    python benchmarks/bench_batch_generation.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from shared.instruction import (  # noqa: E402
    RESPONSE_HEADER,
    extract_response,
    format_input,
    generate_responses,
    load_instruction_data,
    split_data,
)
from shared.pretrained import load_austen_gpt  # noqa: E402
from shared.pretraining import generate  # noqa: E402

MAX_NEW_TOKENS = 20  # chapter 7's


def equal_length_groups(model, tokenizer, entries, max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """The former `generate_responses`: prompts of equal token counts batched together, no padding."""
    context = model.cfg["context_length"]
    prompts = [format_input(entry) + RESPONSE_HEADER for entry in entries]
    encoded = [tokenizer.encode(prompt) for prompt in prompts]
    by_length: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(index)
    responses = [""] * len(entries)
    for length, indices in by_length.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            out = generate(model, torch.tensor([encoded[i] for i in chunk]), min(max_new_tokens, context - length),
                           context, eos_id=tokenizer.eot_token)
            for row, i in zip(out.tolist(), chunk):
                new_ids = row[length:]
                if tokenizer.eot_token in new_ids:
                    new_ids = new_ids[:new_ids.index(tokenizer.eot_token)]
                responses[i] = extract_response(prompts[i] + tokenizer.decode(new_ids), prompts[i])
    return responses


def median_seconds(run: Callable[[], list[str]], repeats: int) -> tuple[float, list[str]]:
    """The median wall-clock time of `repeats` calls of `run()` after one warm-up call, and its result."""
    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: time at least 1 run, e.g. 3")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_austen_gpt()
    _, test_data, _ = split_data(load_instruction_data())
    lengths = [len(tokenizer.encode(format_input(e) + RESPONSE_HEADER)) for e in test_data]
    print(f"{len(test_data)} test entries, prompts of {min(lengths)} to {max(lengths)} tokens "
          f"({len(set(lengths))} distinct lengths); model {model.cfg}; {torch.get_num_threads()} thread(s); "
          f"torch {torch.__version__}", file=sys.stderr)

    ways = {
        "one at a time (batch_size=1)": lambda: generate_responses(model, tokenizer, test_data, MAX_NEW_TOKENS,
                                                                   batch_size=1),
        "equal-length groups (former way)": lambda: equal_length_groups(model, tokenizer, test_data,
                                                                        MAX_NEW_TOKENS),
        "padded batches (batch_size=32)": lambda: generate_responses(model, tokenizer, test_data, MAX_NEW_TOKENS,
                                                                     batch_size=32),
    }
    results = {}
    for name, run in ways.items():
        print(f"timing {name} ...", file=sys.stderr)
        results[name] = median_seconds(run, args.repeats)
    answers = [answers for _, answers in results.values()]
    assert all(a == answers[0] for a in answers), "the three ways gave different answers"

    baseline = results["one at a time (batch_size=1)"][0]
    print(f"| chapter 7's test split, {len(test_data)} entries, {MAX_NEW_TOKENS} new tokens at most | "
          f"seconds (median of {args.repeats}) | speed-up |")
    print("|---|---:|---:|")
    for name, (seconds, _) in results.items():
        print(f"| {name} | {seconds:.2f} | {baseline / seconds:.1f}x |")
    print("\nAll three ways gave the same answers.")


if __name__ == "__main__":
    main()
