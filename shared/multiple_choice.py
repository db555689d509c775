"""Multiple-choice test items: the project's set built from the Austen novels, HellaSwag's file format, MMLU prompts.

An item is a context and a few choices, one of them right. A language model answers by scoring each
choice as a continuation of the context (`shared.evaluation.score_multiple_choice`), the way common
evaluation harnesses score HellaSwag and MMLU. The project's own set asks "which sentence really comes
next in this passage?", with the wrong choices taken from elsewhere in the same novel; it is written in
HellaSwag's JSONL format, so one reader reads both it and HellaSwag's validation file.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.corpus import DATA_DIR, NOVEL_TITLES, NOVELS, load_novel
from shared.files import atomic_write_text, check_sha256

AUSTEN_MC = "multiple_choice/austen-mc.jsonl"  # under shared/data/
AUSTEN_MC_PATH = DATA_DIR / AUSTEN_MC
AUSTEN_MC_SHA256 = "a5fcc5b04bbbd47bb39503b5961cf00b35254f4f018543e500aa35ba3f7c9bdf"
HELD_OUT_NOVEL = "persuasion"  # the novel the training command and the shipped model never train on
HELLASWAG_VAL_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"


@dataclass(frozen=True)
class MultipleChoiceItem:
    """A context, the choices that could continue it, and the index of the right one.

    `source` says where the item comes from (a novel, a HellaSwag activity); `split` is "train" for
    items from text a model may have trained on and "heldout" for text it never saw.
    """

    context: str
    choices: tuple[str, ...]
    label: int
    source: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.context, str) or not self.context:
            raise ValueError("the context is empty: a choice is scored as the continuation of a context, so give "
                             "one (for a question with no passage, use the question itself).")
        if isinstance(self.choices, str) or len(self.choices) < 2:
            raise ValueError(f"an item needs at least 2 choices, got {self.choices!r}: pass a list of strings.")
        if not all(isinstance(c, str) and c for c in self.choices):
            raise ValueError(f"every choice must be a non-empty string, got {self.choices!r}.")
        object.__setattr__(self, "choices", tuple(self.choices))
        if isinstance(self.label, bool) or not isinstance(self.label, int) or not 0 <= self.label < len(self.choices):
            raise ValueError(f"label {self.label!r} is not the index of a choice: with {len(self.choices)} choices "
                             f"it must be an int from 0 to {len(self.choices) - 1}.")


# ---------------------------------------------------------------------------------------------
# The project's set: the true next sentence of a passage, or one from elsewhere in the novel?
# ---------------------------------------------------------------------------------------------

# A sentence ends at . ! or ? (perhaps followed by closing quotes or underscores) before a capital
# letter, except after the titles Mr. Mrs. Dr. St.
SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bDr)(?<!\bSt)"  # not after a title
                          r"[.!?][\"'_\u201d\u2019]*\s+(?=[\"'_\u201c\u2018]*[A-Z])")


def paragraphs(text: str) -> list[str]:
    """A novel's paragraphs (blank-line separated), each on one line with single spaces."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def split_sentences(paragraph: str) -> list[str]:
    """A paragraph cut into sentences: a simple rule that is right for almost all of Austen's prose."""
    sentences, start = [], 0
    for match in SENTENCE_END.finditer(paragraph):
        end = match.start() + len(match.group().rstrip())
        sentences.append(paragraph[start:end])
        start = match.end()
    sentences.append(paragraph[start:])
    return [s for s in sentences if s]


def austen_items_from_novel(novel: str, num_items: int, rng: random.Random, num_choices: int = 4,
                            answer_chars: tuple[int, int] = (40, 160), context_chars: tuple[int, int] = (80, 400),
                            min_distance: int = 50) -> list[MultipleChoiceItem]:
    """`num_items` items from one novel: a passage of one to three sentences from a paragraph, the
    sentence that follows it in that paragraph, and `num_choices - 1` wrong sentences from paragraphs at
    least `min_distance` paragraphs away, of about the same length (within 10%), so that length alone
    gives nothing away.
    """
    paras = [split_sentences(p) for p in paragraphs(load_novel(novel))]
    candidates = []  # (paragraph index, context, answer)
    pool = []  # (paragraph index, sentence): every sentence that could be an answer or a distractor
    for index, sentences in enumerate(paras):
        for position, sentence in enumerate(sentences):
            if not answer_chars[0] <= len(sentence) <= answer_chars[1]:
                continue
            pool.append((index, sentence))
            for size in (3, 2, 1):  # the longest passage before the sentence that fits
                context = " ".join(sentences[max(position - size, 0) : position])
                if position >= size and context_chars[0] <= len(context) <= context_chars[1]:
                    candidates.append((index, context, sentence))
                    break
    rng.shuffle(candidates)
    items: list[MultipleChoiceItem] = []
    for index, context, answer in candidates:
        if len(items) == num_items:
            break
        similar = sorted({s for i, s in pool if abs(i - index) >= min_distance and s != answer
                          and abs(len(s) - len(answer)) <= 0.1 * len(answer)})
        if len(similar) < num_choices - 1:
            continue
        choices = rng.sample(similar, num_choices - 1)
        label = rng.randrange(num_choices)
        choices.insert(label, answer)
        items.append(MultipleChoiceItem(context, tuple(" " + c for c in choices), label, source=novel,
                                        split="heldout" if novel == HELD_OUT_NOVEL else "train"))
    if len(items) < num_items:
        raise ValueError(f"{novel} gave only {len(items)} items, fewer than num_items={num_items}: ask for fewer.")
    return items


def build_austen_multiple_choice(items_per_novel: int = 50, held_out_items: int = 150, num_choices: int = 4,
                                 seed: int = 123) -> list[MultipleChoiceItem]:
    """The project's set: `items_per_novel` items from each training novel and `held_out_items` from
    *Persuasion*, deterministic from `seed` (the shipped file is the default call)."""
    rng = random.Random(seed)
    items = []
    for novel in NOVELS:
        count = held_out_items if novel == HELD_OUT_NOVEL else items_per_novel
        items += austen_items_from_novel(novel, count, rng, num_choices)
    return items


# ---------------------------------------------------------------------------------------------
# HellaSwag's JSONL format (the project's set is written in it too)
# ---------------------------------------------------------------------------------------------


def _clean_hellaswag(text: str) -> str:
    """HellaSwag's WikiHow texts carry markers such as "[title]" and "[step]": a title marker becomes a
    full stop, the others are dropped, and double spaces go."""
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return " ".join(text.split())


def item_from_hellaswag(record: dict, line: int | None = None) -> MultipleChoiceItem:
    """One HellaSwag record (`ctx`, `endings`, `label`, `activity_label`, ...) as an item.

    As common harnesses do, the context is "activity_label: ctx" and each ending is a continuation
    after a space; `split` is taken from the record's `split_type` ("indomain"/"zeroshot") if present,
    else from its `split`.
    """
    where = f"line {line}: " if line is not None else ""
    missing = [key for key in ("ctx", "endings", "label") if key not in record]
    if missing:
        raise ValueError(f"{where}the record has no {', '.join(missing)}: a HellaSwag record needs 'ctx', 'endings' "
                         f"and 'label' (it has {sorted(record)}).")
    label = record["label"]
    if isinstance(label, str) and label.isdigit():
        label = int(label)
    endings = record["endings"]
    if isinstance(endings, str) or not endings:
        raise ValueError(f"{where}'endings' must be a non-empty list of strings, got {endings!r}.")
    activity = _clean_hellaswag(record.get("activity_label", ""))
    context = _clean_hellaswag(record["ctx"])
    try:
        return MultipleChoiceItem(f"{activity}: {context}" if activity else context,
                                  tuple(" " + _clean_hellaswag(e) for e in endings), label,
                                  source=record.get("source_id", activity),
                                  split=record.get("split_type", record.get("split", "")))
    except ValueError as err:
        raise ValueError(f"{where}{err}") from None


def read_hellaswag_jsonl(path: str | Path) -> list[MultipleChoiceItem]:
    """Every record of a HellaSwag-format JSONL file (one JSON object a line), e.g. HellaSwag's
    `hellaswag_val.jsonl` (download it from `HELLASWAG_VAL_URL`). Blank lines are skipped; a bad line is
    named in the error."""
    items = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number} is not JSON ({err.msg}): each line must be one record.") \
                    from None
            items.append(item_from_hellaswag(record, line=number))
    if not items:
        raise ValueError(f"{path} holds no records: is it the right file?")
    return items


def to_hellaswag_record(item: MultipleChoiceItem, index: int) -> dict:
    """An item as a HellaSwag-style record; the choices lose the leading space the reader adds back."""
    return {"ind": index, "activity_label": NOVEL_TITLES.get(item.source, item.source), "ctx": item.context,
            "endings": [c.removeprefix(" ") for c in item.choices], "label": item.label, "source_id": item.source,
            "split": "val", "split_type": item.split}


def write_hellaswag_jsonl(items: Iterable[MultipleChoiceItem], path: str | Path) -> None:
    """Write items as HellaSwag-format JSONL (UTF-8, one record a line, fixed key order: byte for byte
    reproducible)."""
    lines = [json.dumps(to_hellaswag_record(item, i), ensure_ascii=False) + "\n" for i, item in enumerate(items)]
    atomic_write_text(path, "".join(lines))


def load_austen_multiple_choice() -> list[MultipleChoiceItem]:
    """The shipped set (shared/data/multiple_choice/austen-mc.jsonl), checked against its sha256.

    The activity label is the novel's title, so contexts read "Persuasion: ..." as HellaSwag's read
    "Baking cookies: ...".
    """
    check_sha256(AUSTEN_MC_PATH, AUSTEN_MC_SHA256, fix="the file is corrupt or was edited. Restore it with "
                 "`git checkout shared/data`, or make it again with the command in its README.md.")
    return read_hellaswag_jsonl(AUSTEN_MC_PATH)


# ---------------------------------------------------------------------------------------------
# MMLU-style prompts: the question with lettered options, the answer scored as one letter
# ---------------------------------------------------------------------------------------------

LETTERS = "ABCDEFGHIJ"


def format_mmlu_prompt(question: str, options: Sequence[str], subject: str | None = None) -> str:
    """MMLU's prompt: an optional header naming the subject, the question, one line per lettered
    option, and "Answer:", after which the model should put the right letter."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"give 2 to {len(LETTERS)} options, got {len(options)}.")
    header = f"The following are multiple choice questions (with answers) about {subject}.\n\n" if subject else ""
    lines = [question.strip(), *(f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=False))]
    return header + "\n".join(lines) + "\nAnswer:"


def mmlu_item(question: str, options: Sequence[str], label: int, subject: str | None = None) -> MultipleChoiceItem:
    """An MMLU-style item: the prompt as context and the letters " A", " B", ... as the choices, so the
    model is scored on the letter it puts after "Answer:" (each choice is one short token)."""
    return MultipleChoiceItem(format_mmlu_prompt(question, options, subject),
                              tuple(" " + letter for letter in LETTERS[: len(options)]), label,
                              source=subject or "")
