"""Checks for chapter 2's exercises (text data): GPT-2's ids of an unknown word, sliding-window loaders."""

from __future__ import annotations

import torch

from shared.checks.common import correct, not_attempted

AKWIRW_IER_IDS = [33901, 86, 343, 86, 220, 959]


def check_exercise_2_1(ids, pieces) -> None:
    """Exercise 2.1: the GPT-2 ids of "Akwirw ier", and the text of each id decoded on its own."""
    if not_attempted("2.1", ids, pieces):
        return
    ids = list(ids)
    assert all(isinstance(i, int) for i in ids), "ids should be a list of integers from tokenizer.encode(...)"
    assert ids == AKWIRW_IER_IDS, (
        f"the ids are {ids}; GPT-2's tokenizer gives {len(AKWIRW_IER_IDS)} ids for 'Akwirw ier'. "
        "Encode exactly that string with get_gpt2_tokenizer().encode(...)."
    )
    pieces = list(pieces)
    assert len(pieces) == len(ids), f"decode each of the {len(ids)} ids on its own: one piece per id"
    assert "".join(pieces) == "Akwirw ier", (
        f"the pieces {pieces} join to {''.join(pieces)!r}, not 'Akwirw ier': decode each id with decode([i])"
    )
    correct("2.1", "BPE spells the unknown word out of known subwords: " + " | ".join(repr(p) for p in pieces))


def _window_of(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row's max_length + 1 tokens: the inputs plus the last target."""
    return torch.cat([inputs, targets[:, -1:]], dim=1)


def _opening_ids(n: int) -> torch.Tensor:
    """The first `n` GPT-2 ids of Pride and Prejudice, where chapter 2's raw_text starts."""
    from shared.corpus import load_novel
    from shared.tokenization import get_gpt2_tokenizer

    return torch.tensor(get_gpt2_tokenizer().encode(load_novel("prideprejudice")[:500])[:n])


def _check_first_batch(loader, max_length: int, stride: int, label: str) -> None:
    inputs, targets = next(iter(loader))
    assert inputs.ndim == 2 and inputs.shape[1] == max_length, (
        f"{label}: the inputs have shape {tuple(inputs.shape)}; each row should hold max_length={max_length} tokens"
    )
    assert inputs.shape == targets.shape, f"{label}: inputs and targets should have the same shape"
    assert torch.equal(inputs[:, 1:], targets[:, :-1]), f"{label}: targets should be the inputs shifted by one"
    assert inputs.shape[0] == 4, f"{label}: the batch has {inputs.shape[0]} rows; use batch_size=4"
    opening = _opening_ids(max_length + 1)
    assert torch.equal(_window_of(inputs, targets)[0], opening), (
        f"{label}: the first row should be the first {max_length} tokens of raw_text (the opening of Pride and "
        "Prejudice). Build the loader over raw_text, with shuffle=False."
    )
    # Row r + 1 starts `stride` tokens after row r (only true without shuffling): the window of
    # max_length + 1 tokens (inputs plus the last target) of row r, moved by `stride`, is row r + 1's.
    window = _window_of(inputs, targets)
    overlap = max_length + 1 - stride
    for r in range(inputs.shape[0] - 1):
        assert torch.equal(window[r, stride:], window[r + 1, :overlap]), (
            f"{label}: row {r + 1} should start {stride} tokens after row {r}. Did you pass stride={stride} "
            "and shuffle=False?"
        )


def check_exercise_2_2(dataloader_2_2, dataloader_8_2) -> None:
    """Exercise 2.2: loaders with (max_length=2, stride=2) and (max_length=8, stride=2), unshuffled."""
    if not_attempted("2.2", dataloader_2_2, dataloader_8_2):
        return
    _check_first_batch(dataloader_2_2, max_length=2, stride=2, label="max_length=2, stride=2")
    _check_first_batch(dataloader_8_2, max_length=8, stride=2, label="max_length=8, stride=2")
    correct("2.2", "With stride < max_length, consecutive windows overlap; with stride = max_length they tile.")
