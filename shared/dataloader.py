"""Chapter 2's data pipeline: sliding-window datasets, the book's data loader, and document packing.

`GPTDatasetV1` and `create_dataloader_v1` are the book's (section 2.6); `join_documents` and
`pack_documents` put `<|endoftext|>` between documents and cut the stream into training blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from shared.tokenization import get_gpt2_tokenizer


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
