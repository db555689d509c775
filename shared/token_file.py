"""Chapter 9's token file: a corpus as one flat array of uint16 token ids on disk, read through a memory map.

`write_token_file` streams documents in (each followed by `<|endoftext|>`) and appends their ids to
`NAME.bin` in chunks, so memory stays flat however large the corpus; `NAME.bin.json` beside it says
how to read it (dtype, count, end-of-text id, tokenizer). The `.bin` holds nothing but the ids,
little-endian uint16, the layout nanoGPT's `train.bin` uses. `open_token_file` maps it without
loading it, and `get_batch` cuts random training windows from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.files import atomic_path, atomic_write_text
from shared.tokenization import describe_tokenizer, tokenizer_from_description, vocab_size_of

FORMAT = "llm-token-file"
DTYPE = np.dtype("<u2")  # little-endian uint16: ids 0 to 65,535
MAX_VOCAB_SIZE = 1 << 16


def _checked_vocab_size(tokenizer) -> int:
    """The tokenizer's number of ids, refused unless they fit in uint16 and it has an <|endoftext|> token."""
    vocab_size = vocab_size_of(tokenizer)
    if vocab_size is None:
        raise ValueError("the tokenizer does not say how many ids it has (no vocab_size or n_vocab).")
    if vocab_size > MAX_VOCAB_SIZE:
        raise ValueError(f"the tokenizer has {vocab_size:,} ids, but a uint16 token file holds ids up to "
                         f"{MAX_VOCAB_SIZE - 1:,}. Use a tokenizer with at most {MAX_VOCAB_SIZE:,} ids "
                         "(GPT-2's has 50,257; the project's BPE 4,096).")
    if tokenizer.eot_token is None:
        raise ValueError("the tokenizer has no <|endoftext|> token to put between documents.")
    return vocab_size


class TokenFileWriter:
    """Append documents' token ids to a uint16 token file, `chunk_tokens` ids in memory at most (plus one document).

    Use it as a context manager; on a clean exit it writes the sidecar JSON and renames the
    finished files into place, so a crash never leaves a half-written file that looks complete.
    """

    def __init__(self, path: str | os.PathLike, tokenizer, chunk_tokens: int = 1 << 16):
        self.vocab_size = _checked_vocab_size(tokenizer)
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.eot_id = tokenizer.eot_token
        self.buffer = np.empty(chunk_tokens, dtype=DTYPE)
        self.filled = 0
        self.num_tokens = 0
        self.num_documents = 0
        self._open = ExitStack()  # the .bin's temporary name (see atomic_path) and the file open on it
        self._file = None

    def __enter__(self):
        tmp = self._open.enter_context(atomic_path(self.path))  # renamed onto self.path when the stack closes
        self._file = self._open.enter_context(open(tmp, "wb"))
        return self

    def _append(self, ids: np.ndarray) -> None:
        if len(ids) > len(self.buffer) - self.filled:
            self.flush()
        if len(ids) > len(self.buffer):  # a document longer than the buffer goes straight to disk
            self._file.write(ids.astype(DTYPE).tobytes())
        else:
            self.buffer[self.filled : self.filled + len(ids)] = ids
            self.filled += len(ids)
        self.num_tokens += len(ids)

    def flush(self) -> None:
        """Write the buffered ids to disk and empty the buffer."""
        self._file.write(self.buffer[: self.filled].tobytes())
        self.filled = 0

    def add_document(self, text: str) -> None:
        """Tokenize one document (special-token text in it is ordinary text) and append it, then <|endoftext|>."""
        ids = np.array(self.tokenizer.encode_ordinary(text) + [self.eot_id], dtype=np.int64)
        self._append(ids)
        self.num_documents += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:  # close the file and delete it; the exception goes on
            self._open.__exit__(exc_type, exc, tb)
            return
        with self._open:  # on leaving: the file closed, flushed to disk and renamed onto self.path
            self.flush()
        header = {"format": FORMAT, "version": 1, "dtype": "uint16", "byte_order": "little",
                  "num_tokens": self.num_tokens, "num_documents": self.num_documents, "eot_id": self.eot_id,
                  "vocab_size": self.vocab_size, "tokenizer": describe_tokenizer(self.tokenizer)}
        atomic_write_text(sidecar_path(self.path), json.dumps(header, indent=1))


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the description of token file `path` lives: `path` + '.json'."""
    return Path(f"{path}.json")


@dataclass
class TokenFile:
    """An opened token file: `tokens` is a read-only np.memmap of uint16 ids; nothing is loaded until sliced."""

    path: Path
    tokens: np.memmap
    eot_id: int
    vocab_size: int
    num_documents: int
    tokenizer_name: str
    header: dict

    def __len__(self) -> int:
        return len(self.tokens)

    def load_tokenizer(self):
        """The tokenizer the file was written with (GPT-2's, or the BPETokenizer stored in the sidecar)."""
        return tokenizer_from_description(self.header["tokenizer"], source=str(sidecar_path(self.path)))


def write_token_file(path: str | os.PathLike, documents: Iterable[str], tokenizer,
                     chunk_tokens: int = 1 << 16) -> TokenFile:
    """Tokenize `documents` (any iterable, read once, lazily) into a uint16 token file and open it."""
    with TokenFileWriter(path, tokenizer, chunk_tokens) as writer:
        for document in documents:
            writer.add_document(document)
    return open_token_file(path)


def open_token_file(path: str | os.PathLike) -> TokenFile:
    """Map a token file written by `write_token_file` (checked against its sidecar) without reading it."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no token file at {path}: write one with write_token_file(path, documents, tok).")
    if not sidecar.is_file():
        raise ValueError(f"{path} has no description beside it ({sidecar.name} is missing), so its dtype and "
                         "tokenizer are unknown: it is not a token file written by write_token_file.")
    try:
        header = json.loads(sidecar.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{sidecar} is not valid JSON ({err}): it is not a token file's description.") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("dtype") != "uint16":
        raise ValueError(f"{sidecar} does not describe a uint16 token file (format {FORMAT!r}): "
                         "it was not written by write_token_file.")
    for key, kind in (("num_tokens", int), ("num_documents", int), ("eot_id", int), ("vocab_size", int),
                      ("tokenizer", dict)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise ValueError(f"{sidecar} has {'no' if key not in header else 'a malformed'} {key!r} entry "
                             f"(expected {kind.__name__}, found {header.get(key)!r}): the description is damaged. "
                             "Write the token file again with write_token_file.")
    if header["num_tokens"] < 0:
        raise ValueError(f"{sidecar} says the file holds {header['num_tokens']} tokens: the description is damaged. "
                         "Write the token file again with write_token_file.")
    expected_bytes = header["num_tokens"] * DTYPE.itemsize
    actual_bytes = path.stat().st_size
    if actual_bytes != expected_bytes:
        raise ValueError(f"{path} has {actual_bytes:,} bytes, but its description promises {header['num_tokens']:,} "
                         f"tokens ({expected_bytes:,} bytes): the file is truncated or was changed. Write it again.")
    tokens = (np.memmap(path, dtype=DTYPE, mode="r", shape=(header["num_tokens"],)) if expected_bytes
              else np.zeros(0, dtype=DTYPE))  # an empty file cannot be memory-mapped
    return TokenFile(path, tokens, header["eot_id"], header["vocab_size"], header["num_documents"],
                     _tokenizer_kind(header["tokenizer"]), header)


def _tokenizer_kind(description: dict) -> str:
    """'bpe', 'gpt2', ...: sidecars written before the one tokenizer description called it "name"."""
    return description.get("kind", description.get("name", "unknown"))


def get_batch(tokens: np.ndarray, batch_size: int, context_length: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of the token array as int64 tensors: inputs x and targets y = x shifted by one.

    Only the windows are read from disk; starts come from `torch.randint` with `generator`, so a
    seeded generator gives the same batches every run.
    """
    if batch_size < 1 or context_length < 1:
        raise ValueError(f"batch_size={batch_size} and context_length={context_length}: both must be at least 1.")
    if len(tokens) < context_length + 1:
        raise ValueError(f"the token file has {len(tokens):,} tokens; one window of context_length={context_length} "
                         f"needs {context_length + 1}. Use a smaller context_length or a larger corpus.")
    starts = torch.randint(0, len(tokens) - context_length, (batch_size,), generator=generator).tolist()
    windows = torch.from_numpy(np.stack([tokens[s : s + context_length + 1] for s in starts]).astype(np.int64))
    return windows[:, :-1], windows[:, 1:]


def sample_batch(ids: np.ndarray | torch.Tensor, batch_size: int, context_length: int, seed: int, step: int,
                 micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`get_batch` with windows that are a function of (seed, step, micro) alone.

    No sampler state carries over between steps, so a resumed run draws exactly the batches the
    uninterrupted run would have drawn. `ids` is a token file's memory map or a tensor of ids.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + micro)
    return get_batch(ids, batch_size, context_length, generator)


def split_token_file(token_file: TokenFile, val_fraction: float) -> tuple[np.ndarray, torch.Tensor]:
    """Training ids (still a memory map: nothing is read) and the held-out end, cut after an <|endoftext|>."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction {val_fraction} must be between 0 and 1, e.g. 0.1.")
    tokens = token_file.tokens
    cut = int(len(tokens) * (1 - val_fraction))
    window = np.asarray(tokens[max(cut - 1_000_000, 0):cut])  # look back at most 1M tokens for a document end
    ends = np.flatnonzero(window == token_file.eot_id)
    if len(ends):
        cut = max(cut - 1_000_000, 0) + int(ends[-1]) + 1
    return tokens[:cut], torch.from_numpy(np.asarray(tokens[cut:]).astype(np.int64))


def held_out_documents(val_ids: torch.Tensor, tokenizer, eot_id: int, name: str) -> list[tuple[str, str]]:
    """The held-out ids as text documents (split at <|endoftext|>), for scoring in bits per byte."""
    documents, start = [], 0
    ids = val_ids.tolist()
    for end in [i for i, t in enumerate(ids) if t == eot_id] + [len(ids)]:
        if end > start:
            documents.append((f"{name} (held-out document {len(documents) + 1})", tokenizer.decode(ids[start:end])))
        start = end + 1
    return [(n, t) for n, t in documents if t.strip()]
