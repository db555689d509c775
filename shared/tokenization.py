"""Tokenizers for chapter 2: the book's word tokenizers and a byte-level BPE that matches GPT-2.

`SimpleTokenizerV1` and `SimpleTokenizerV2` are the book's regex tokenizers over a fixed vocabulary.
`BPETokenizer` is byte-level byte pair encoding with GPT-2's pre-tokenization: it can be trained
from text, or loaded with GPT-2's own merges, in which case it gives exactly tiktoken's ids.
`get_gpt2_tokenizer()` builds GPT-2's tiktoken encoding from the rank file shipped in `shared/data/`.
"""

from __future__ import annotations

import base64
import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import regex
import tiktoken

from shared.files import DATA_DIR, atomic_write_text, check_sha256

# ---------------------------------------------------------------------------------------------
# Chapter 2.2-2.4: the book's simple tokenizers
# ---------------------------------------------------------------------------------------------

SIMPLE_SPLIT_PATTERN = r'([,.:;?_!"()\']|--|\s)'


def simple_split(text: str) -> list[str]:
    """Split text into words and punctuation with the book's regex, dropping whitespace.

    Defined in section 2.2 of the book.
    """
    pieces = re.split(SIMPLE_SPLIT_PATTERN, text)
    return [piece.strip() for piece in pieces if piece.strip()]


def build_vocab(text: str, special_tokens: Iterable[str] = ()) -> dict[str, int]:
    """Map every distinct token of `text` (sorted) to an integer, special tokens last.

    Defined in section 2.3 of the book; the special tokens come in section 2.4.
    """
    all_tokens = sorted(set(simple_split(text)))
    all_tokens.extend(token for token in special_tokens if token not in all_tokens)
    return {token: integer for integer, token in enumerate(all_tokens)}


class SimpleTokenizerV1:
    """The book's word tokenizer: text to the ids of a fixed vocabulary, and back.

    Defined in section 2.3 of the book.
    """

    def __init__(self, vocab):
        self.str_to_int = vocab
        self.int_to_str = {i: s for s, i in vocab.items()}

    def encode(self, text):
        preprocessed = simple_split(text)
        unknown = [s for s in preprocessed if s not in self.str_to_int]
        if unknown:
            raise ValueError(
                f"{len(unknown)} token(s) are not in the vocabulary, e.g. {unknown[:5]}. "
                "Build the vocabulary from text that contains them, or use SimpleTokenizerV2, "
                "which maps unknown words to <|unk|>."
            )
        return [self.str_to_int[s] for s in preprocessed]

    def decode(self, ids):
        unknown = [i for i in ids if i not in self.int_to_str]
        if unknown:
            raise ValueError(
                f"token id(s) {unknown[:5]} are not in the vocabulary "
                f"(ids run from 0 to {len(self.int_to_str) - 1})."
            )
        text = " ".join(self.int_to_str[i] for i in ids)
        # Remove the spaces that join() put before punctuation.
        return re.sub(r'\s+([,.:;?!"()\'])', r"\1", text)


class SimpleTokenizerV2(SimpleTokenizerV1):
    """`SimpleTokenizerV1` that encodes a word missing from the vocabulary as `<|unk|>`.

    Defined in section 2.4 of the book.
    """

    def __init__(self, vocab):
        if "<|unk|>" not in vocab:
            raise ValueError(
                "SimpleTokenizerV2 needs an '<|unk|>' entry in its vocabulary; "
                "add one with vocab['<|unk|>'] = len(vocab)."
            )
        super().__init__(vocab)

    def encode(self, text):
        preprocessed = [s if s in self.str_to_int else "<|unk|>" for s in simple_split(text)]
        return [self.str_to_int[s] for s in preprocessed]


# ---------------------------------------------------------------------------------------------
# Beyond the book: byte-level BPE, trained from scratch or loaded with GPT-2's merges
# ---------------------------------------------------------------------------------------------

# GPT-2's pre-tokenization: contractions, runs of letters, of digits, of other symbols (each may
# take one leading space), and whitespace. BPE never merges across these pieces.
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
# The pre-tokenization patterns a tokenizer file may name. A pattern is a small program for the regex engine,
# and a crafted one can take exponential time on a short input, so files may only choose among these.
KNOWN_PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN}
# The last place where a whitespace character follows a non-whitespace one. GPT-2's pattern
# always ends a piece there, whatever comes next, so a stream can be cut there safely.
_LAST_SAFE_CUT = regex.compile(r"(?r)(?<=\S)\s")

GPT2_RANKS_PATH = DATA_DIR / "gpt2" / "gpt2.tiktoken"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_EOT_ID = 50256


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte to a printable character, so any token can be shown as text."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:  # control characters and spaces get the code points after 255, in byte order
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def token_to_str(token: bytes) -> str:
    """Show a token's bytes as printable text, GPT-2 style (a leading space shows as 'Ġ')."""
    return "".join(_BYTE_TO_CHAR[b] for b in token)


def str_to_token(text: str) -> bytes:
    """Inverse of `token_to_str`."""
    try:
        return bytes(_CHAR_TO_BYTE[c] for c in text)
    except KeyError:
        raise ValueError(f"{text!r} is not a token written by token_to_str") from None


_NOT_A_MERGE = float("inf")  # the rank of a pair that was never learned


def _descending(token: bytes) -> tuple[int, ...]:
    """A key whose ascending order is the descending order of `token`: heapq pops the smallest,
    and training must pop the lexicographically greatest pair among equally frequent ones."""
    return (*(255 - b for b in token), 256)


class BPETokenizer:
    """Byte-level byte pair encoding with GPT-2's pre-tokenization.

    `vocab` maps every id to its bytes (the 256 single bytes, each merge's result, and the special
    tokens' UTF-8 bytes); `merges` lists the learned pairs in the order they were learned.
    """

    cache_size = 100_000  # distinct pieces kept between calls (memory stays flat while streaming)
    long_piece = 256  # bytes; longer pieces (URLs, base64, unspaced text) take the O(n log n) path

    def __init__(
        self,
        vocab: dict[int, bytes] | None = None,
        merges: list[tuple[bytes, bytes]] | None = None,
        special_tokens: Iterable[str] = (),
        pattern: str = GPT2_SPLIT_PATTERN,
    ):
        if vocab is None:
            vocab = {i: bytes([i]) for i in range(256)}
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = list(merges or [])
        self.pattern = pattern
        self.merge_counts: list[int] = []  # filled in by train(): each merged pair's frequency

        next_id = max(self.vocab, default=-1) + 1
        bytes_to_id = {token: i for i, token in self.vocab.items()}
        self.special_tokens: dict[str, int] = {}
        for special in special_tokens:
            if not special or regex.search(r"\s", special):
                raise ValueError(f"special token {special!r} must be non-empty and contain no whitespace.")
            token_id = bytes_to_id.get(special.encode("utf-8"))
            if token_id is None:
                token_id, next_id = next_id, next_id + 1
                self.vocab[token_id] = special.encode("utf-8")
            self.special_tokens[special] = token_id
        self._check_consistent()

        special_ids = set(self.special_tokens.values())
        self._ids = {token: i for i, token in self.vocab.items() if i not in special_ids}
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._regex = regex.compile(pattern)
        self._cache: dict[str, tuple[int, ...]] = {}

    def _check_consistent(self) -> None:
        known = set(self.vocab.values())
        missing = [bytes([b]) for b in range(256) if bytes([b]) not in known]
        if missing:
            raise ValueError(f"vocab lacks {len(missing)} of the 256 single-byte tokens, e.g. {missing[:3]}.")
        for rank, (left, right) in enumerate(self.merges):
            if left + right not in known:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) makes a token that is not in vocab.")

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 byte tokens + learned merges + special tokens."""
        return len(self.vocab)

    @property
    def eot_token(self) -> int | None:
        """The id of `<|endoftext|>`, if this tokenizer has it."""
        return self.special_tokens.get("<|endoftext|>")

    # -- training ------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Iterable[str] = (),
        pattern: str = GPT2_SPLIT_PATTERN,
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text`.

        Pair counts are kept up to date incrementally: a merge only revisits the words that contain
        the merged pair. Among equally frequent pairs the lexicographically greatest (by bytes) wins.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: it must cover the 256 byte tokens and "
                f"{len(special_tokens)} special token(s), so it must be at least {256 + len(special_tokens)}."
            )

        # 1. Pre-tokenize (never across special tokens) and count each distinct piece once.
        splitter = regex.compile(pattern)
        piece_counts: Counter[str] = Counter()
        for chunk in _split_on_specials(text, special_tokens):
            piece_counts.update(splitter.findall(chunk))
        words = [list(piece.encode("utf-8")) for piece in piece_counts]
        counts = list(piece_counts.values())

        # 2. Count every adjacent pair once, remembering which words contain it.
        vocab = {i: bytes([i]) for i in range(256)}
        pair_counts: Counter[tuple[int, int]] = Counter()
        pair_words: dict[tuple[int, int], set[int]] = {}
        for w, (word, count) in enumerate(zip(words, counts)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += count
                pair_words.setdefault(pair, set()).add(w)

        # 3. A heap of (-count, tie-break key, pair); entries whose count is stale are skipped.
        sort_keys = {i: _descending(token) for i, token in vocab.items()}

        def entry(pair: tuple[int, int]) -> tuple:
            return (-pair_counts[pair], sort_keys[pair[0]], sort_keys[pair[1]], pair)

        heap = [entry(pair) for pair in pair_counts]
        heapq.heapify(heap)

        merges: list[tuple[bytes, bytes]] = []
        merge_counts: list[int] = []
        bar = _progress_bar(num_merges, "BPE merges") if progress else None
        while len(merges) < num_merges and heap:
            neg_count, _, _, pair = heapq.heappop(heap)
            if -neg_count != pair_counts.get(pair, 0) or neg_count == 0:
                continue  # stale entry: the count changed after it was pushed
            new_id = 256 + len(merges)
            vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
            sort_keys[new_id] = _descending(vocab[new_id])
            merges.append((vocab[pair[0]], vocab[pair[1]]))
            merge_counts.append(-neg_count)

            # 4. Re-count only the words that contain the pair: take away their old pairs, merge,
            #    add their new pairs, and push every pair whose count changed.
            delta: Counter[tuple[int, int]] = Counter()
            for w in pair_words.pop(pair):
                word, count = words[w], counts[w]
                merged = _merge_pair(word, pair, new_id)
                if len(merged) == len(word):
                    continue  # this word lost the pair to an earlier merge
                for old in zip(word, word[1:]):
                    delta[old] -= count
                for new in zip(merged, merged[1:]):
                    delta[new] += count
                    pair_words.setdefault(new, set()).add(w)
                words[w] = merged
            for changed_pair, change in delta.items():
                if change:
                    pair_counts[changed_pair] += change
                    if changed_pair != pair and pair_counts[changed_pair] > 0:
                        heapq.heappush(heap, entry(changed_pair))
            del pair_counts[pair]
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

        tokenizer = cls(vocab, merges, special_tokens, pattern)
        tokenizer.merge_counts = merge_counts
        return tokenizer

    # -- encoding ------------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode `text` to ids, with tiktoken's rules for special tokens.

        Special tokens in `allowed_special` become their ids; one in `disallowed_special` (by default
        every special token not allowed) raises an error; any other is encoded as ordinary text.
        """
        _check_text(text)
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        if disallowed:
            found = _special_regex(frozenset(disallowed)).search(text)
            if found:
                raise ValueError(
                    f"the text contains the special token {found.group()!r}, which is not allowed here. "
                    f"Pass allowed_special={{{found.group()!r}}} to encode it as a special token, or "
                    "disallowed_special=() to encode it as ordinary text."
                )
        ids: list[int] = []
        for chunk in _split_on_specials(text, allowed, keep=True):
            if chunk in allowed:
                ids.append(self.special_tokens[chunk])
            else:
                ids.extend(self.encode_ordinary(chunk))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with every special token treated as ordinary text."""
        _check_text(text)
        pieces = self._regex.findall(text)
        # Text repeats its words: run BPE once per distinct piece, then look the rest up.
        cache = self._cache
        if len(cache) > self.cache_size:
            cache.clear()
        for piece in set(pieces).difference(cache):
            cache[piece] = self._encode_piece(piece)
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """Apply the merges to one pre-tokenized piece, in the order they were learned.

        Each pass merges every occurrence of the earliest-learned pair present. That equals merging
        one occurrence at a time, since a pair formed by a merge was always learned after it.
        """
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        if len(parts) > self.long_piece:
            return tuple(self._ids[part] for part in _merge_long_piece(parts, self._ranks))
        ranks = self._ranks
        while len(parts) > 1:
            pair = min(zip(parts, parts[1:]), key=lambda p: ranks.get(p, _NOT_A_MERGE))
            if pair not in ranks:
                break
            parts = _merge_pair(parts, pair, pair[0] + pair[1])
        return tuple(self._ids[part] for part in parts)

    def encode_iterable(
        self,
        chunks: Iterable[str],
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> Iterator[int]:
        """Encode a stream of text (e.g. an open file) lazily, in memory that does not grow with it.

        Yields exactly the ids `encode("".join(chunks))` would return. Text is held back only up to
        the last whitespace that follows a non-whitespace character, where no piece can straddle.
        """
        buffer = ""
        for chunk in chunks:
            buffer += chunk
            cut = _LAST_SAFE_CUT.search(buffer)
            if cut is not None and cut.start() > 0:
                yield from self.encode(buffer[: cut.start()], allowed_special, disallowed_special)
                buffer = buffer[cut.start() :]
        if buffer:
            yield from self.encode(buffer, allowed_special, disallowed_special)

    def _special_sets(self, allowed_special, disallowed_special) -> tuple[set[str], set[str]]:
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special names {sorted(unknown)}, which are not special tokens "
                             f"of this tokenizer (it has {sorted(self.special_tokens)}).")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = set(disallowed_special)
        return allowed, disallowed

    # -- decoding ------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that `ids` stand for."""
        try:
            return b"".join(self.vocab[i] for i in ids)
        except KeyError as err:
            raise ValueError(f"token id {err.args[0]} is not in the vocabulary "
                             f"(this tokenizer has {self.vocab_size} ids).") from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode ids to text; bytes that are not valid UTF-8 on their own become '�'."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- saving and loading ---------------------------------------------------------------------

    def to_json(self) -> str:
        """The tokenizer as readable JSON (tokens shown GPT-2 style): what `save` writes."""
        special_ids = set(self.special_tokens.values())
        data = {
            "format": "bpe-tokenizer",
            "version": 1,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            # Keyed by id: two merges may build the same bytes, so a token string is not a unique key.
            "vocab": {str(i): token_to_str(t) for i, t in sorted(self.vocab.items()) if i not in special_ids},
            "merges": [f"{token_to_str(a)} {token_to_str(b)}" for a, b in self.merges],
        }
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"

    def describe(self) -> dict:
        """What checkpoints and token files store to rebuild this tokenizer (see `tokenizer_from_description`)."""
        return {"kind": "bpe", "vocab_size": self.vocab_size, "json": self.to_json()}

    @classmethod
    def from_json(cls, text: str, source: str = "the JSON text") -> BPETokenizer:
        """Rebuild a tokenizer from `to_json`'s output; `source` names it in error messages."""
        try:
            data = json.loads(text)
            if data.get("format") != "bpe-tokenizer" or data.get("version") != 1:
                raise ValueError("not a version-1 'bpe-tokenizer' file")
            vocab = {int(i): str_to_token(s) for i, s in data["vocab"].items()}
            for special, i in data["special_tokens"].items():
                vocab[int(i)] = special.encode("utf-8")
            merges = [tuple(str_to_token(part) for part in line.split(" ")) for line in data["merges"]]
            if any(len(merge) != 2 for merge in merges):
                raise ValueError("a merge line does not hold exactly two tokens")
            if data["pattern"] not in KNOWN_PATTERNS.values():
                raise ValueError(f"its pre-tokenization pattern {data['pattern'][:60]!r} is not one of the known "
                                 f"ones ({', '.join(KNOWN_PATTERNS)}); a pattern from a file is not run, since a "
                                 "crafted one can hang the program. To use your own pattern, pass it in code: "
                                 "BPETokenizer(vocab, merges, special_tokens, pattern)")
            return cls(vocab, merges, list(data["special_tokens"]), data["pattern"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{source} is not a valid tokenizer file written by BPETokenizer.save(): "
                             f"{err}. Save the tokenizer again.") from err

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as readable JSON (tokens shown GPT-2 style), atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by `save`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a tokenizer file (not UTF-8 text): BPETokenizer.save() writes "
                             "readable JSON. Load the file it wrote.") from None
        return cls.from_json(text, source=str(path))

    @classmethod
    def from_tiktoken_ranks(
        cls, ranks: dict[bytes, int], special_tokens: dict[str, int], pattern: str = GPT2_SPLIT_PATTERN
    ) -> BPETokenizer:
        """Build the tokenizer from tiktoken-style ranks (token bytes -> id, lower = merged earlier).

        The merges are recovered: each multi-byte token is the merge of the two parts that BPE,
        using only lower-ranked tokens, splits it into.
        """
        merges = []
        for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
            if len(token) == 1:
                continue
            parts = _bpe_by_rank(ranks, token, max_rank=rank)
            if len(parts) != 2:
                raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked "
                                 "tokens: the ranks are not a BPE vocabulary.")
            merges.append((parts[0], parts[1]))
        vocab = {rank: token for token, rank in ranks.items()}
        for special, i in special_tokens.items():
            vocab[i] = special.encode("utf-8")
        return cls(vocab, merges, list(special_tokens), pattern)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")


def _check_text(text) -> None:
    """Encoding takes text: bytes or anything else gets an error that says how to get text."""
    if not isinstance(text, str):
        hint = " Decode bytes first, e.g. data.decode('utf-8')." if isinstance(text, bytes | bytearray) else ""
        raise TypeError(f"encode takes a str, not {type(text).__name__}.{hint}")


def _merge_pair(word: list, pair: tuple, new_token) -> list:
    """Replace every non-overlapping occurrence of `pair` in `word`, left to right, by `new_token`."""
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            merged.append(new_token)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


def _merge_long_piece(parts: list[bytes], ranks: dict[tuple[bytes, bytes], int]) -> list[bytes]:
    """The merges of `_encode_piece` in O(n log n), for long pieces where repeated passes are slow.

    A heap holds (rank, position) of every mergeable neighbour pair in a linked list of parts, so the
    earliest-learned pair, leftmost first, is always merged next. Entries made stale by an earlier
    merge are skipped when popped.
    """
    n = len(parts)
    nxt, prv, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
    heap = [(ranks[pair], i) for i, pair in enumerate(zip(parts, parts[1:])) if pair in ranks]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if not alive[i] or j >= n or ranks.get((parts[i], parts[j])) != rank:
            continue  # stale: a neighbour was merged since this entry was pushed
        parts[i] += parts[j]  # merge j into i and unlink j
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[i] < n:
            prv[nxt[i]] = i
        for left in (prv[i], i):  # the two pairs that now include the merged part
            if left >= 0 and nxt[left] < n and (parts[left], parts[nxt[left]]) in ranks:
                heapq.heappush(heap, (ranks[(parts[left], parts[nxt[left]])], left))
    return [part for part, keep in zip(parts, alive) if keep]


def _bpe_by_rank(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Split `token` with tiktoken's rule (merge the pair whose result has the lowest rank),
    using only tokens ranked below `max_rank`."""
    parts = [bytes([b]) for b in token]
    while True:
        best_i, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_i, best_rank = i, rank
        if best_i < 0:
            return parts
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]


@lru_cache(maxsize=64)
def _special_regex(tokens: frozenset[str]) -> regex.Pattern:
    # Longest first, so that where special tokens overlap the longest match wins.
    return regex.compile("|".join(regex.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def _split_on_specials(text: str, specials: Collection[str], keep: bool = False) -> list[str]:
    """Split `text` at special tokens (longest match first); keep them as chunks if `keep`."""
    if not specials:
        return [text]
    pattern = _special_regex(frozenset(specials))
    chunks, start = [], 0
    for match in pattern.finditer(text):
        chunks.append(text[start : match.start()])
        if keep:
            chunks.append(match.group())
        start = match.end()
    chunks.append(text[start:])
    return [chunk for chunk in chunks if chunk]


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="merge")


# ---------------------------------------------------------------------------------------------
# GPT-2's tokenizer, offline
# ---------------------------------------------------------------------------------------------


def load_tiktoken_ranks(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[bytes, int]:
    """Read a tiktoken rank file (one 'base64-token rank' per line), checking its sha256 if given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rank file {path} does not exist. Reinstall the package "
                                "(pip install -e .) to restore shared/data/.")
    data = path.read_bytes()
    if expected_sha256 is not None:
        check_sha256(data, expected_sha256, f"rank file {path}", fix="it is corrupt or a different tokenizer. "
                     "Restore it from the repository (git checkout shared/data).")
    ranks = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise ValueError(f"rank file {path}, line {number}: expected 'base64-token rank', "
                             f"got {line[:40]!r}. The file is corrupt.") from None
    return ranks


class GPT2Encoding(tiktoken.Encoding):
    """GPT-2's tiktoken encoding with the package's `Tokenizer` interface added (`vocab_size`, `describe`).

    It is a `tiktoken.Encoding`, so everything the book does with `tiktoken.get_encoding("gpt2")` works.
    """

    @property
    def vocab_size(self) -> int:
        """Number of ids (tiktoken calls it `n_vocab`): 50,257 for GPT-2."""
        return self.n_vocab

    def encode(self, text: str, **kwargs) -> list[int]:
        """tiktoken's `encode`, with a clear error for bytes or other non-text input."""
        _check_text(text)
        return super().encode(text, **kwargs)

    def encode_ordinary(self, text: str) -> list[int]:
        """tiktoken's `encode_ordinary`, with a clear error for non-text input."""
        _check_text(text)
        return super().encode_ordinary(text)

    def describe(self) -> dict:
        """GPT-2's tokenizer is rebuilt by name from the shipped rank file."""
        return {"kind": "gpt2", "vocab_size": self.n_vocab}


@lru_cache(maxsize=1)
def get_gpt2_tokenizer() -> GPT2Encoding:
    """GPT-2's tokenizer as a tiktoken `Encoding`, from the shipped rank file: no network needed."""
    return GPT2Encoding(
        name="gpt2",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=load_tiktoken_ranks(GPT2_RANKS_PATH, GPT2_RANKS_SHA256),
        special_tokens={"<|endoftext|>": GPT2_EOT_ID},
    )


@lru_cache(maxsize=1)
def get_gpt2_bpe_tokenizer() -> BPETokenizer:
    """GPT-2's tokenizer as a from-scratch `BPETokenizer` (same ids as `get_gpt2_tokenizer()`)."""
    ranks = load_tiktoken_ranks(GPT2_RANKS_PATH, GPT2_RANKS_SHA256)
    return BPETokenizer.from_tiktoken_ranks(ranks, {"<|endoftext|>": GPT2_EOT_ID})


# ---------------------------------------------------------------------------------------------
# One interface for every tokenizer the package trains with, and one JSON description of it
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class Tokenizer(Protocol):
    """What training, checkpoints and token files ask of a tokenizer.

    `BPETokenizer` and GPT-2's encoding (`get_gpt2_tokenizer()`) satisfy it. The book's
    `SimpleTokenizerV1`/`V2` do not: they have no byte fallback, no `<|endoftext|>` by default and
    nothing to save, so they stay the small teaching classes of chapter 2.
    """

    @property
    def vocab_size(self) -> int:
        """Number of token ids; every id is below it."""
        ...

    @property
    def eot_token(self) -> int | None:
        """The id of `<|endoftext|>` (None if the tokenizer has none)."""
        ...

    def encode(self, text: str, *, allowed_special: Literal["all"] | Collection[str] = ...) -> list[int]:
        """Text to ids; special tokens only where `allowed_special` names them."""
        ...

    def encode_ordinary(self, text: str) -> list[int]:
        """Text to ids, with special-token text encoded as ordinary text."""
        ...

    def decode(self, tokens: list[int]) -> str:
        """Ids to text."""
        ...

    def describe(self) -> dict:
        """A JSON-able description from which `tokenizer_from_description` rebuilds the tokenizer."""
        ...


def vocab_size_of(tokenizer) -> int | None:
    """How many ids `tokenizer` has: `vocab_size`, or tiktoken's `n_vocab` (a plain `tiktoken.get_encoding`);
    None if it says neither."""
    for name in ("vocab_size", "n_vocab"):
        if isinstance(getattr(tokenizer, name, None), int):
            return getattr(tokenizer, name)
    return None


def describe_tokenizer(tokenizer) -> dict:
    """The JSON description that checkpoints and token files store (a plain tiktoken GPT-2 encoding is GPT-2's)."""
    if hasattr(tokenizer, "describe"):
        return tokenizer.describe()
    if getattr(tokenizer, "name", None) == "gpt2" and vocab_size_of(tokenizer) == GPT2_EOT_ID + 1:
        return {"kind": "gpt2", "vocab_size": GPT2_EOT_ID + 1}
    raise ValueError(f"cannot describe a {type(tokenizer).__name__} so that it can be rebuilt: use a BPETokenizer "
                     "or GPT-2's (get_gpt2_tokenizer()).")


def tokenizer_from_description(description: dict, source: str = "the description") -> Tokenizer:
    """Rebuild the tokenizer that `describe_tokenizer` described; `source` names it in error messages.

    Also reads the two older forms: checkpoints' `{"kind": ...}` without a vocabulary size, and
    token files' `{"name": ...}`.
    """
    kind = description.get("kind", description.get("name")) if isinstance(description, dict) else None
    if kind == "bpe":
        return BPETokenizer.from_json(description["json"], source=source)
    if kind == "gpt2":
        return get_gpt2_tokenizer()
    raise ValueError(f"{source} describes a tokenizer that cannot be rebuilt ({kind or description!r}): "
                     "only 'bpe' (a BPETokenizer stored as JSON) and 'gpt2' can. Load that tokenizer yourself.")


def build_tokenizer(spec: str, train_text: str) -> Tokenizer:
    """GPT-2's tokenizer (`spec` "gpt2"), or a byte-level BPE with `int(spec)` ids learned from `train_text`."""
    if spec == "gpt2":
        return get_gpt2_tokenizer()
    try:
        vocab_size = int(spec)
    except ValueError:
        raise ValueError(f"tokenizer {spec!r}: use 'gpt2' or a vocabulary size such as 4096.") from None
    return BPETokenizer.train(train_text, vocab_size, special_tokens=["<|endoftext|>"])
