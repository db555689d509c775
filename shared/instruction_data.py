"""Chapter 7's instruction dataset, made from the shipped Austen novels: `python -m shared.instruction_data`.

The book finetunes on 1,100 instruction-response pairs downloaded from its repository. Offline we make
our own, in the same Alpaca format (`instruction`, `input`, `output`), from sentences of the six novels,
with tasks whose answers can be checked exactly and that a small model can learn in a few epochs:
name the novel a sentence comes from, name the character it mentions, give its first or last word,
and repeat it. Every source sentence is used once, so no test input appears in training.

The generator is seeded and its output byte-stable: running it again rewrites the same file, and a
test regenerates it in memory and compares.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from shared.corpus import NOVEL_TITLES, NOVELS, load_novel
from shared.files import atomic_write_text

DATA_PATH = Path(__file__).resolve().parent / "data" / "instructions" / "austen-instructions.json"
SEED = 123

# Names of characters that each occur in one novel only (Elizabeth, Jane, Fanny, Catherine, Anne,
# Isabella or Louisa would not: each names people in two novels).
CHARACTERS = {
    "prideprejudice": ("Darcy", "Bingley", "Lydia", "Wickham", "Collins", "Bennet"),
    "sensesensibility": ("Elinor", "Marianne", "Willoughby", "Dashwood", "Brandon", "Ferrars"),
    "emma": ("Emma", "Knightley", "Harriet", "Weston", "Elton", "Woodhouse"),
    "mansfieldpark": ("Edmund", "Crawford", "Bertram", "Norris", "Rushworth", "Yates"),
    "northangerabbey": ("Tilney", "Thorpe", "Morland", "Allen", "Eleanor"),
    "persuasion": ("Wentworth", "Elliot", "Musgrove", "Russell", "Benwick"),
}
ALL_NAMES = frozenset(name for names in CHARACTERS.values() for name in names)

# Each task: the instruction, and how many entries of it go to each split. The splits follow the
# book's 85% / 10% / 5% (train / test / validation) of 1,100 entries.
PER_TASK = {"train": 187, "test": 22, "val": 11}
SPLITS = ("train", "test", "val")  # the order of the entries in the file, as the book slices them

INSTRUCTIONS = {
    "novel": "Name the novel this sentence comes from.",
    "character": "Name the character mentioned in this sentence.",
    "first_word": "Give the first word of this sentence.",
    "last_word": "Give the last word of this sentence.",
    "repeat": "Repeat this sentence exactly.",
}
TASKS = tuple(INSTRUCTIONS)

# -- sentences ------------------------------------------------------------------------------------------

_ABBREVIATION = re.compile(r"\b(Mr|Mrs|Dr|St)\.")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Plain sentences only: letters, spaces, commas, semicolons, apostrophes inside words and
# hyphenated words; a capital first and a full stop last. No quotes, dashes or brackets, so every
# word and answer is unambiguous.
_CLEAN = re.compile(r"[A-Z][a-z]*(?:[ ,;]+[A-Za-z]+(?:['-][A-Za-z]+)*)+\.")


def clean_sentences(text: str) -> list[str]:
    """The plain sentences of a novel, in order: paragraphs joined, italics marks dropped, filtered."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.replace("_", "").split())
        protected = _ABBREVIATION.sub(r"\1<dot>", paragraph)  # "Mr." does not end a sentence
        for sentence in _SENTENCE_END.split(protected):
            sentence = sentence.replace("<dot>", ".")
            if _CLEAN.fullmatch(_ABBREVIATION.sub(r"\1", sentence)):
                sentences.append(sentence)
    return sentences


def words_of(sentence: str) -> list[str]:
    """The words of a sentence without the punctuation around them (apostrophes and hyphens stay)."""
    return [word.strip(",;.") for word in sentence.split() if word.strip(",;.")]


def names_in(sentence: str) -> set[str]:
    """The main characters' names a sentence mentions (also as possessives: "Emma's")."""
    return {word.removesuffix("'s") for word in words_of(sentence)} & ALL_NAMES


# -- tasks: which sentences fit each, and its answer --------------------------------------------------


# Capitalised words that may stand beside a character's name without naming another person.
HONORIFICS = frozenset({"Mr", "Mrs", "Miss", "Sir", "Lady", "Captain", "Colonel", "Admiral", "Dr", "General"})


def _only_proper_noun_is_the_name(sentence: str) -> bool:
    """True when every capitalised word after the first is a main character's name or an honorific.

    So "Name the character mentioned" has one right answer: no other person or place is named.
    """
    later_words = [word.removesuffix("'s") for word in words_of(sentence)[1:]]
    return all(not word[0].isupper() or word in ALL_NAMES or word in HONORIFICS or word == "I"
               for word in later_words)


# Sentences are kept short (at most 16 words; 10 for repeating) so that the Alpaca-style prompt, the
# input and the response fit the 128-token context of the shipped model with room to spare.
def _fits(task: str, sentence: str, novel: str) -> bool:
    n_words = len(words_of(sentence))
    if task == "novel":  # names of this novel's characters only, so the name gives the novel away
        names = names_in(sentence)
        return 6 <= n_words <= 16 and bool(names) and names <= set(CHARACTERS[novel])
    if task == "character":
        return 5 <= n_words <= 16 and len(names_in(sentence)) == 1 and _only_proper_noun_is_the_name(sentence)
    if task == "repeat":
        return 4 <= n_words <= 10
    return 5 <= n_words <= 16  # first_word, last_word


def answer(task: str, sentence: str, novel: str) -> str:
    """The correct output of `task` for `sentence` (taken from `novel`)."""
    if task == "novel":
        return NOVEL_TITLES[novel]
    if task == "character":
        (name,) = names_in(sentence)
        return name
    if task == "first_word":
        return words_of(sentence)[0]
    if task == "last_word":
        return words_of(sentence)[-1]
    if task == "repeat":
        return sentence
    raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}.")


# -- the dataset -------------------------------------------------------------------------------------------


def _draw(pool: list[tuple[str, str]], used: set[int], task: str, count: int) -> list[tuple[str, str]]:
    """Take `count` (novel, sentence) pairs of `pool` that fit `task` and are not `used` yet; mark them used.

    For the novel task the six novels take turns, so each is (almost) equally represented.
    """
    fitting = [i for i, (novel, sentence) in enumerate(pool) if i not in used and _fits(task, sentence, novel)]
    if task == "novel":
        queues = [[i for i in fitting if pool[i][0] == novel] for novel in NOVELS]
        fitting = [i for group in zip(*queues) for i in group]  # one of each novel, in turn
    if len(fitting) < count:
        raise RuntimeError(f"only {len(fitting)} sentences fit the task {task!r}, which needs {count}")
    chosen = fitting[:count]
    used.update(chosen)
    return [pool[i] for i in chosen]


def build_instruction_data(seed: int = SEED) -> list[dict[str, str]]:
    """The whole dataset: the training entries, then the test entries, then the validation entries.

    Each entry has the Alpaca fields `instruction`, `input` and `output`, plus `task` (for a score per
    task). Each task has the same number of entries in each split.
    """
    rng = random.Random(seed)
    pool = [(novel, sentence) for novel in NOVELS for sentence in clean_sentences(load_novel(novel))]
    rng.shuffle(pool)
    per_split, used = {split: [] for split in SPLITS}, set()
    for task in TASKS:
        drawn = _draw(pool, used, task, sum(PER_TASK.values()))
        rng.shuffle(drawn)
        entries = [{"instruction": INSTRUCTIONS[task], "input": sentence, "output": answer(task, sentence, novel),
                    "task": task} for novel, sentence in drawn]
        start = 0
        for split in SPLITS:
            per_split[split] += entries[start:start + PER_TASK[split]]
            start += PER_TASK[split]
    data = []
    for split in SPLITS:
        rng.shuffle(per_split[split])  # mix the tasks within each split
        data += per_split[split]
    return data


def to_json(data: list[dict[str, str]]) -> str:
    """The dataset as the shipped file's text: stable key order, one entry field per line, ASCII."""
    return json.dumps(data, indent=1, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.instruction_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_PATH, help="where to write the JSON file")
    args = parser.parse_args(argv)
    data = build_instruction_data()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, to_json(data))
    counts = {task: sum(entry["task"] == task for entry in data) for task in TASKS}
    print(f"wrote {len(data)} entries to {args.out}: {counts}")


if __name__ == "__main__":
    main()
