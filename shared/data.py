"""Chapter 2's data pipeline: the shipped corpus, sliding-window datasets and document packing.

`GPTDatasetV1` and `create_dataloader_v1` are the book's; `load_novel` / `load_corpus` read the six
Jane Austen novels shipped in `shared/data/` (checksummed, so nothing is downloaded or silently
corrupt), and `pack_documents` joins documents with `<|endoftext|>` into training blocks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

import torch
from torch.utils.data import DataLoader, Dataset

from shared.tokenization import DATA_DIR, get_gpt2_tokenizer

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


@lru_cache(maxsize=1)
def _expected_checksums() -> dict[str, str]:
    lines = (DATA_DIR / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def read_shipped_file(relative: str) -> bytes:
    """The bytes of a file under shared/data/ (e.g. "austen/emma.txt"), checked against SHA256SUMS."""
    data = (DATA_DIR / relative).read_bytes()
    if hashlib.sha256(data).hexdigest() != _expected_checksums()[relative]:
        raise ValueError(f"{DATA_DIR / relative} does not match its sha256 in SHA256SUMS: the file is "
                         "corrupt or was edited. Restore it with `git checkout shared/data`.")
    return data


def load_novel(name: str) -> str:
    """The text of one shipped novel, e.g. `load_novel("prideprejudice")`, checked against its sha256."""
    if name not in NOVELS:
        raise ValueError(f"unknown novel {name!r}; the shipped novels are {', '.join(NOVELS)}.")
    return read_shipped_file(f"austen/{name}.txt").decode("utf-8")


def load_corpus(names: Iterable[str] | None = None) -> list[str]:
    """The shipped novels as a list of documents (all six, in `NOVELS` order, unless named)."""
    return [load_novel(name) for name in (NOVELS if names is None else names)]


class GPTDatasetV1(Dataset):
    """Input/target pairs cut from one token sequence by a sliding window.

    Window i starts at token i * stride; its target is the same window shifted one token right.
    `txt` is the text, or a list of token ids already encoded. The ids are stored once and each
    window is sliced on demand, so memory grows with the text, not with the number of windows.
    """

    def __init__(self, txt, tokenizer, max_length, stride):
        if isinstance(txt, str):
            token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        else:
            token_ids = list(txt)
        if max_length < 1 or stride < 1:
            raise ValueError(f"max_length and stride must be at least 1 (got {max_length} and {stride}).")
        if len(token_ids) < max_length + 1:
            raise ValueError(
                f"the text has {len(token_ids)} tokens, but one window of max_length={max_length} "
                f"needs at least {max_length + 1} (the inputs plus one more token for the shifted target). "
                "Use a longer text or a smaller max_length."
            )
        self.token_ids = torch.tensor(token_ids)
        self.max_length = max_length
        self.stride = stride

    def __len__(self):
        # Every start i with a full target window: i + max_length + 1 <= number of tokens.
        return (len(self.token_ids) - self.max_length - 1) // self.stride + 1

    def __getitem__(self, idx):
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} is out of range for a dataset of {len(self)} windows.")
        start = (idx % len(self)) * self.stride
        input_chunk = self.token_ids[start : start + self.max_length]
        target_chunk = self.token_ids[start + 1 : start + self.max_length + 1]
        return input_chunk, target_chunk


def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True,
                         drop_last=True, num_workers=0, tokenizer=None):
    """The book's loader: GPT-2-tokenize `txt`, cut windows, batch them."""
    if tokenizer is None:
        tokenizer = get_gpt2_tokenizer()
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    if drop_last and len(dataset) < batch_size:
        raise ValueError(
            f"the text gives only {len(dataset)} window(s) of max_length={max_length} with "
            f"stride={stride}, fewer than batch_size={batch_size}, and drop_last=True would drop "
            "them all. Use a longer text, a smaller batch_size or stride, or drop_last=False."
        )
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers)


def join_documents(documents: Iterable[str], tokenizer) -> list[int]:
    """Tokenize each document and put `<|endoftext|>` after each one, as GPT-2's training data does."""
    eot_id = tokenizer.eot_token
    if eot_id is None:
        raise ValueError("the tokenizer has no <|endoftext|> token to separate documents with.")
    token_ids: list[int] = []
    for document in documents:
        token_ids.extend(tokenizer.encode(document, allowed_special={"<|endoftext|>"}))
        token_ids.append(eot_id)
    return token_ids


def pack_documents(documents: Iterable[str], tokenizer, max_length: int) -> GPTDatasetV1:
    """Pack documents into back-to-back training blocks of `max_length` tokens.

    No padding is wasted: a block may end one document and begin the next, with `<|endoftext|>`
    between them telling the model that what follows does not continue what came before.
    """
    return GPTDatasetV1(join_documents(documents, tokenizer), None, max_length, stride=max_length)
