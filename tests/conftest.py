"""Shared pytest set-up: a deterministic hypothesis profile for CI, and a one-thread fixture."""

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread while a module runs: tiny models gain nothing from two, and on a busy machine
    (or beside processes a test launched) the threads keep waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ByteTokenizer:
    """A tokenizer for tests with tiny models: one id per byte (0-255) and `<|endoftext|>` as 256."""

    eot_token = 256
    vocab_size = 257

    def encode(self, text: str, allowed_special=frozenset()) -> list[int]:
        pieces = text.split("<|endoftext|>") if "<|endoftext|>" in allowed_special else [text]
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            ids += ([self.eot_token] if i else []) + list(piece.encode("utf-8"))
        return ids

    def decode(self, ids) -> str:
        return "".join("<|endoftext|>" if i == self.eot_token else chr(i) for i in ids)


@pytest.fixture(scope="session")
def byte_tokenizer() -> ByteTokenizer:
    """A byte-level tokenizer with an end token: small vocabularies keep test models fast."""
    return ByteTokenizer()
