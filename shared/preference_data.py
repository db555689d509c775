"""Chapter 13's preference pairs, made from chapter 7's instruction data: `python -m shared.preference_data`.

Each of the 1,100 instruction entries becomes one pair for the same prompt: the `chosen` answer is
the correct output; the `rejected` answer is the chapter 7 model's own greedy answer where that is
wrong, so preference tuning works on the mistakes the model really makes. Where the model answers
right, a rule makes a plausible failure of the same kind instead (another novel, another character
of the same novel, a neighbouring word, the sentence with a word left out). `rejected_by` says which.
The pairs keep the instruction file's order, so `split_data` gives the same 935 / 110 / 55 split and
no test prompt is ever tuned on.

The model (`shared/data/models/austen-gpt-sft.safetensors`) answers in float64, so rounding cannot
tip a greedy choice from one CPU to another, and the rules draw from a generator seeded by each
entry: running this again rewrites the same file byte for byte (`--check` compares instead).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from shared.corpus import NOVEL_TITLES
from shared.files import atomic_write_text, read_shipped_file
from shared.instruction import generate_responses, load_instruction_data, normalize_answer
from shared.instruction_data import CHARACTERS, TASKS, words_of
from shared.preference import validate_preference_data
from shared.pretrained import load_austen_gpt_sft

DATA_PATH = Path(__file__).resolve().parent / "data" / "preferences" / "austen-preferences.json"
SEED = 123
MAX_NEW_TOKENS = 20  # as chapter 7 scores its answers


def _other(rng: random.Random, options: Sequence[str], correct: str) -> str:
    """One of `options` that is not `correct` (compared as answers are scored)."""
    return rng.choice([option for option in options if normalize_answer(option) != normalize_answer(correct)])


def rule_made_rejection(entry: Mapping[str, str], seed: int = SEED) -> str:
    """A plausible wrong answer to `entry`, of the kind a model makes on its task, drawn with a generator
    seeded by `seed` and the entry's input (so it does not depend on the other entries)."""
    rng = random.Random(f"{seed}:{entry['task']}:{entry['input']}")
    words, output = entry["input"].split(), entry["output"]
    task = entry["task"]
    if task == "novel":
        return _other(rng, list(NOVEL_TITLES.values()), output)
    if task == "character":
        novel = next(novel for novel, names in CHARACTERS.items() if output in names)
        return _other(rng, CHARACTERS[novel], output)  # someone else from the same novel
    if task == "first_word":
        return _other(rng, words_of(entry["input"])[1:3], output)  # a neighbour of the first word
    if task == "last_word":
        return _other(rng, words_of(entry["input"])[-3:-1], output)  # a neighbour of the last word
    if task == "repeat":
        dropped = rng.randrange(1, len(words))  # leave out one word after the first
        kept = " ".join(word for i, word in enumerate(words) if i != dropped)
        return kept if dropped < len(words) - 1 else kept.rstrip(",;") + "."
    raise ValueError(f"entry has the unknown task {task!r}: the rules cover {', '.join(TASKS)}.")


def model_answers(entries: Sequence[Mapping[str, str]], model=None, tokenizer=None) -> list[str]:
    """The chapter 7 model's greedy answers to `entries`, computed in float64 (the same on every machine)."""
    if model is None:
        model, tokenizer = load_austen_gpt_sft()
    model = model.to(torch.float64)
    try:
        return generate_responses(model, tokenizer, entries, max_new_tokens=MAX_NEW_TOKENS, batch_size=64)
    finally:
        model.to(torch.float32)


def build_preference_data(entries: Sequence[Mapping[str, str]] | None = None, answers: Sequence[str] | None = None,
                          seed: int = SEED) -> list[dict[str, str]]:
    """One pair per instruction entry (all 1,100 by default), in their order: the model's wrong answer as
    `rejected` where it has one, else a rule-made one. `answers` (one per entry) skips running the model."""
    entries = load_instruction_data() if entries is None else list(entries)
    answers = model_answers(entries) if answers is None else list(answers)
    if len(answers) != len(entries):
        raise ValueError(f"{len(entries)} entries but {len(answers)} answers: give one answer per entry.")
    pairs = []
    for entry, answer in zip(entries, answers):
        wrong = answer.strip() and normalize_answer(answer) != normalize_answer(entry["output"])
        pairs.append({"instruction": entry["instruction"], "input": entry["input"], "chosen": entry["output"],
                      "rejected": answer.strip() if wrong else rule_made_rejection(entry, seed),
                      "rejected_by": "model" if wrong else "rule", "task": entry["task"]})
    return pairs


def to_json(pairs: list[dict[str, str]]) -> str:
    """The pairs as the shipped file's text: stable key order, ASCII, a newline at the end."""
    return json.dumps(pairs, indent=1, ensure_ascii=True) + "\n"


def load_preference_data(path: str | Path = DATA_PATH) -> list[dict[str, str]]:
    """The shipped preference pairs (1,100, in the instruction data's order), checked against SHA256SUMS."""
    if Path(path) == DATA_PATH:
        text = read_shipped_file("preferences/austen-preferences.json").decode("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): make it again with "
                         "`python -m shared.preference_data`.") from None
    return validate_preference_data(data, source=str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.preference_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_PATH, help="where to write the JSON file")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file differs")
    args = parser.parse_args(argv)
    text = to_json(build_preference_data())
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: " + ("the same, byte for byte" if same else "DIFFERS from what the generator makes"))
        sys.exit(0 if same else 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    pairs = json.loads(text)
    print(f"wrote {len(pairs)} pairs to {args.out}: "
          f"{sum(p['rejected_by'] == 'model' for p in pairs)} rejected answers by the model, "
          f"{sum(p['rejected_by'] == 'rule' for p in pairs)} by rule")


if __name__ == "__main__":
    main()
