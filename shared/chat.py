"""Talk to a model you trained: `python -m shared.chat runs/austen/checkpoint.safetensors`.

With `--prompt`, prints one continuation and exits (repeat `--prompt` to continue several texts in one
batch); without it, asks for prompts in a loop (an empty line or Ctrl-D ends). Decoding options are
chapter 5's: temperature, top-k, top-p, a length limit, and stopping at <|endoftext|>.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from shared.devices import pick_device
from shared.pretrained import load_trained_model
from shared.pretraining import generate_batch, text_to_token_ids


def continue_text(model, tokenizer, prompt: str, *, max_new_tokens: int, temperature: float, top_k: int | None,
                  top_p: float | None, device=None) -> str:
    """The prompt's continuation (without the prompt), stopping early at <|endoftext|>.

    `device` is kept for older callers: the tokens go to the model's device.
    """
    return continue_texts(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, temperature=temperature,
                          top_k=top_k, top_p=top_p)[0]


def continue_texts(model, tokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float,
                   top_k: int | None, top_p: float | None) -> list[str]:
    """Each prompt's continuation, generated together in one batch (`generate_batch`), stopping at <|endoftext|>.

    A prompt longer than the model's context is continued from its last `context_length` tokens.
    """
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"prompts is {prompts!r}: give a list of one or more texts to continue.")
    context = model.cfg["context_length"]
    encoded = []
    for index, prompt in enumerate(prompts):
        ids = text_to_token_ids(prompt, tokenizer)[0].tolist()
        if not ids:
            which = "the prompt" if len(prompts) == 1 else f"prompt {index}"
            raise ValueError(f"{which} is empty: type some text to continue.")
        encoded.append(ids[-context:])
    continuations = generate_batch(model, encoded, max_new_tokens, context, temperature=temperature, top_k=top_k,
                                   top_p=top_p, eos_id=tokenizer.eot_token)
    return [tokenizer.decode(ids) for ids in continuations]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m shared.chat", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint written by python -m shared.train")
    p.add_argument("--prompt", action="append",
                   help="continue this text once and exit (default: ask in a loop); repeat it to continue "
                        "several texts in one batch")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (always the most likely token)")
    p.add_argument("--top-k", type=int, default=50, help="sample among the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, default=0.95, help="sample within this probability mass (1 = all)")
    p.add_argument("--seed", type=int, help="for repeatable samples")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    args = p.parse_args(argv)
    if args.max_new_tokens < 1:
        p.error(f"--max-new-tokens {args.max_new_tokens}: ask for at least 1 token, e.g. 200")
    if not (args.temperature >= 0 and math.isfinite(args.temperature)):  # NaN fails both comparisons
        p.error(f"--temperature {args.temperature}: use 0 (greedy) or a positive number, e.g. 0.8")
    if args.top_k < 0:
        p.error(f"--top-k {args.top_k}: use 0 (all tokens) or a positive count, e.g. 50")
    if not 0 < args.top_p <= 1:  # NaN fails too
        p.error(f"--top-p {args.top_p}: use a probability mass in (0, 1], e.g. 0.95 (1 = all tokens)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
        model, tokenizer = load_trained_model(args.checkpoint, device)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.seed is not None:
        torch.manual_seed(args.seed)
    options = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   top_k=args.top_k or None, top_p=args.top_p if args.top_p < 1 else None)
    try:
        if args.prompt is not None:
            continuations = continue_texts(model, tokenizer, args.prompt, **options)
            print("\n\n".join(prompt + text for prompt, text in zip(args.prompt, continuations)))
            return
        print("Type the start of a text; the model continues it. An empty line or Ctrl-D quits.")
        while True:
            try:
                prompt = input("\n> ")
            except EOFError:
                break
            if not prompt.strip():
                break
            print(prompt + continue_text(model, tokenizer, prompt, **options))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
