"""The text a model trains on: six Jane Austen novels shipped in `shared/data/austen/`, or the reader's own files.

`load_novel` / `load_corpus` read the novels checked against their sha256 (so nothing is downloaded
and nothing is silently corrupt). `build_corpus` splits the novels, or any folder of .txt files,
into training and held-out documents, as the training command does. Chapter 2's datasets and
loaders that cut this text into training windows live in `shared/dataloader.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.files import DATA_DIR, read_shipped_file  # noqa: F401 - DATA_DIR: callers import it from here

NOVELS = (
    "prideprejudice",
    "sensesensibility",
    "emma",
    "mansfieldpark",
    "northangerabbey",
    "persuasion",
)

NOVEL_TITLES = {  # the titles, for labels and answers
    "prideprejudice": "Pride and Prejudice",
    "sensesensibility": "Sense and Sensibility",
    "emma": "Emma",
    "mansfieldpark": "Mansfield Park",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}


def load_novel(name: str) -> str:
    """The text of one shipped novel, e.g. `load_novel("prideprejudice")`, checked against its sha256."""
    if name not in NOVELS:
        raise ValueError(f"unknown novel {name!r}; the shipped novels are {', '.join(NOVELS)}.")
    return read_shipped_file(f"austen/{name}.txt").decode("utf-8")


def load_corpus(names: Iterable[str] | None = None) -> list[str]:
    """The shipped novels as a list of documents (all six, in `NOVELS` order, unless named)."""
    return [load_novel(name) for name in (NOVELS if names is None else names)]


# -- the reader's own text, and a train/held-out split ----------------------------------------------


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file's contents, with a clear error for binary or empty files."""
    path = Path(path)
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


def load_documents(paths: Iterable[str | Path]) -> list[tuple[str, str]]:
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


@dataclass
class Corpus:
    """Named documents, (name, text), for training and for validation."""

    train: list[tuple[str, str]]
    val: list[tuple[str, str]]

    def describe(self) -> str:
        """How many documents and bytes each part holds, in one line."""
        def size(docs):
            return f"{len(docs)} document(s), {sum(len(t.encode('utf-8')) for _, t in docs):,} bytes"
        return f"train: {size(self.train)}; validation: {size(self.val)}"


def build_corpus(data: Iterable[str | Path] | None = None, val_fraction: float = 0.1,
                 val_novel: str = "persuasion") -> Corpus:
    """The shipped novels with `val_novel` held out whole, or the reader's files (`data`: files or folders of
    .txt) with the last `val_fraction` of each held out, cut at a line break."""
    if not data:
        if val_novel not in NOVELS:
            raise ValueError(f"val_novel {val_novel!r} is not one of the shipped novels: {', '.join(NOVELS)}.")
        return Corpus(train=[(n, load_novel(n)) for n in NOVELS if n != val_novel],
                      val=[(val_novel, load_novel(val_novel))])
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction {val_fraction} must be between 0 and 1, e.g. 0.1.")
    train, val = [], []
    for name, text in load_documents(data):
        cut = int(len(text) * (1 - val_fraction))
        cut = text.rfind("\n", 0, cut) + 1 or cut  # cut at a line break where there is one
        train.append((name, text[:cut]))
        val.append((name, text[cut:]))
    return Corpus(train=train, val=[(n, t) for n, t in val if t.strip()])
