"""Chapter 9's deduplication: exact copies by hashing, near-duplicates by MinHash and locality-sensitive hashing.

Exact copies share the hash of their normalised text. Near-duplicates (a few words changed, lines
re-wrapped, a header added) share most of their word k-grams ("shingles"); MinHash estimates the
Jaccard similarity of two shingle sets from short signatures, and LSH banding finds the similar
pairs without comparing every pair (Broder 1997; Leskovec, Rajaraman and Ullman, *Mining of
Massive Datasets*, chapter 3).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

MERSENNE_PRIME = (1 << 31) - 1  # hash values live in [0, p); a * x + b stays below 2**63 in uint64


def exact_hash(text: str) -> str:
    """A fingerprint of the text (sha256 of its UTF-8 bytes): equal texts, equal fingerprints."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def exact_duplicates(texts: Sequence[str]) -> dict[int, int]:
    """{index of a copy: index of the first text it copies}; the first occurrence of each text is kept."""
    first_seen: dict[str, int] = {}
    copies = {}
    for i, text in enumerate(texts):
        first = first_seen.setdefault(exact_hash(text), i)
        if first != i:
            copies[i] = first
    return copies


def shingles(text: str, k: int = 5) -> set[str]:
    """The set of k-word windows of the lower-cased words ('w-shingles'); a short text gives its whole self."""
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i : i + k]) for i in range(max(len(words) - k + 1, 1))}


def jaccard(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B|: 1 for equal sets, 0 for disjoint ones (and for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 0.0


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of `num_perm` random hash functions h(x) = (a * x + b) mod p, one per signature slot."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    return a, b


def minhash_signature(shingle_set: set[str], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """For each of `num_perm` random hash functions, the smallest hash over the set's shingles.

    Two sets' signatures agree in a slot with probability equal to their Jaccard similarity, so
    the fraction of agreeing slots estimates it (standard error about sqrt(J(1-J)/num_perm)).
    """
    if not shingle_set:
        raise ValueError("cannot MinHash an empty set of shingles: drop empty documents before deduplicating.")
    a, b = _permutations(num_perm, seed)
    x = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in shingle_set), dtype=np.uint64,
                    count=len(shingle_set)) % MERSENNE_PRIME
    hashes = (a[:, None] * x[None, :] + b[:, None]) % MERSENNE_PRIME  # (num_perm, number of shingles)
    return hashes.min(axis=1)


def estimated_jaccard(signature_a: np.ndarray, signature_b: np.ndarray) -> float:
    """The fraction of MinHash slots in which two signatures agree: an estimate of their sets' Jaccard."""
    if signature_a.shape != signature_b.shape:
        raise ValueError(f"signatures of different lengths ({len(signature_a)} and {len(signature_b)}): "
                         "make both with the same num_perm and seed.")
    return float(np.mean(signature_a == signature_b))


def lsh_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The chance that LSH makes two documents of this Jaccard similarity a candidate pair: 1 - (1 - s^r)^b."""
    return 1 - (1 - np.asarray(similarity, dtype=float) ** rows) ** bands


def lsh_threshold(bands: int, rows: int) -> float:
    """The similarity where the S-curve rises most steeply, about (1/b)^(1/r)."""
    return (1 / bands) ** (1 / rows)


def lsh_candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, whose signatures agree on all `rows` slots of at least one of `bands` bands."""
    if signatures.ndim != 2 or signatures.shape[1] != bands * rows:
        raise ValueError(f"signatures of shape {signatures.shape} cannot be cut into {bands} bands of {rows} rows: "
                         f"bands * rows must equal the signature length.")
    pairs = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for i, key in enumerate(signatures[:, band * rows : (band + 1) * rows]):
            buckets.setdefault(key.tobytes(), []).append(i)
        for members in buckets.values():
            pairs.update((p, q) for n, p in enumerate(members) for q in members[n + 1 :])
    return pairs


def near_duplicate_pairs(texts: Sequence[str], threshold: float = 0.7, num_perm: int = 128, bands: int = 16,
                         rows: int = 8, k: int = 5, seed: int = 1) -> list[tuple[int, int, float]]:
    """Pairs (i, j, estimated Jaccard) of texts whose shingle sets look at least `threshold` similar.

    LSH proposes candidates; each is kept only if its MinHash estimate reaches the threshold.
    """
    signatures = np.stack([minhash_signature(shingles(text, k), num_perm, seed) for text in texts])
    found = []
    for i, j in sorted(lsh_candidate_pairs(signatures, bands, rows)):
        similarity = estimated_jaccard(signatures[i], signatures[j])
        if similarity >= threshold:
            found.append((i, j, similarity))
    return found


def duplicate_clusters(num_texts: int, pairs: Sequence[tuple]) -> list[int]:
    """For each text, the smallest index of its cluster (texts joined by pairs, transitively): union-find."""
    parent = list(range(num_texts))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return i

    for i, j, *_ in pairs:
        ri, rj = root(i), root(j)
        parent[max(ri, rj)] = min(ri, rj)
    return [root(i) for i in range(num_texts)]


def near_duplicates_to_remove(texts: Sequence[str], **kwargs) -> dict[int, int]:
    """{index to drop: index kept in its place}: every near-duplicate cluster keeps its first text."""
    clusters = duplicate_clusters(len(texts), near_duplicate_pairs(texts, **kwargs))
    return {i: keep for i, keep in enumerate(clusters) if keep != i}
