"""Chapter 9's deduplication: exact hashing, MinHash estimates, LSH banding, and the planted duplicates found."""

import itertools
import random

import numpy as np
import pytest

from shared.dedup import (
    duplicate_clusters,
    estimated_jaccard,
    exact_duplicates,
    jaccard,
    lsh_candidate_pairs,
    lsh_probability,
    lsh_threshold,
    minhash_signature,
    near_duplicate_pairs,
    near_duplicates_to_remove,
    shingles,
)
from shared.text_cleaning import normalize_text
from shared.toy_crawl import make_raw_crawl, paragraph_passages

DUPLICATE_KINDS = ("exact_copy", "edited", "rewrapped", "header")


@pytest.fixture(scope="module")
def crawl():
    docs = make_raw_crawl()
    return docs, [normalize_text(d.text) for d in docs]


def test_shingles_and_jaccard_by_hand():
    assert shingles("The cat sat on the mat", k=2) == {"the cat", "cat sat", "sat on", "on the", "the mat"}
    assert shingles("Hi!", k=5) == {"hi"}
    a, b = shingles("a b c d", k=2), shingles("a b c e", k=2)  # {ab, bc, cd} and {ab, bc, ce}
    assert jaccard(a, b) == pytest.approx(2 / 4)
    assert jaccard(set(), set()) == 0.0


def test_exact_duplicates_keep_the_first_copy():
    assert exact_duplicates(["a", "b", "a", "c", "b", "a"]) == {2: 0, 4: 1, 5: 0}


def test_minhash_estimates_jaccard_within_its_standard_error():
    passages = paragraph_passages("emma")[:40]
    rng = random.Random(1)
    errors = []
    for p in passages:
        q = " ".join(w if rng.random() > 0.1 else "xyzzy" for w in p.split())  # ~10% of words changed
        a, b = shingles(p), shingles(q)
        exact = jaccard(a, b)
        estimate = estimated_jaccard(minhash_signature(a, 256), minhash_signature(b, 256))
        errors.append(estimate - exact)
        assert abs(estimate - exact) < 4 * np.sqrt(exact * (1 - exact) / 256) + 0.01  # within 4 standard errors
    assert abs(np.mean(errors)) < 0.02  # unbiased
    assert np.sqrt(np.mean(np.square(errors))) < 0.045  # about sqrt(J(1-J)/256) ~ 0.03


def test_minhash_of_equal_and_disjoint_sets():
    a = shingles(paragraph_passages("persuasion")[3])
    b = shingles(paragraph_passages("persuasion")[200])
    assert estimated_jaccard(minhash_signature(a), minhash_signature(set(a))) == 1.0
    assert estimated_jaccard(minhash_signature(a), minhash_signature(b)) < 0.05
    with pytest.raises(ValueError, match="empty set of shingles"):
        minhash_signature(set())


def test_lsh_s_curve():
    assert lsh_probability(0.0, 16, 8) == 0.0 and lsh_probability(1.0, 16, 8) == 1.0
    assert lsh_probability(0.5, 1, 1) == pytest.approx(0.5)
    assert lsh_probability(0.5, 2, 2) == pytest.approx(1 - 0.75**2)
    assert lsh_threshold(16, 8) == pytest.approx(0.707, abs=1e-3)
    s = np.linspace(0, 1, 101)
    assert np.all(np.diff(lsh_probability(s, 16, 8)) >= 0)


def test_lsh_candidates_match_the_s_curve():
    """Over many random pairs with a known slot agreement, LSH proposes them at the predicted rate."""
    rng = np.random.default_rng(0)
    bands, rows, similarity, trials = 8, 4, 0.6, 2000
    base = rng.integers(0, 1 << 30, size=(trials, bands * rows))
    other = np.where(rng.random((trials, bands * rows)) < similarity, base, base + 1)
    signatures = np.empty((2 * trials, bands * rows), dtype=np.int64)
    signatures[0::2], signatures[1::2] = base, other
    pairs = lsh_candidate_pairs(signatures, bands, rows)
    found = sum((2 * t, 2 * t + 1) in pairs for t in range(trials))
    assert found / trials == pytest.approx(lsh_probability(similarity, bands, rows), abs=0.03)
    with pytest.raises(ValueError, match="bands \\* rows must equal"):
        lsh_candidate_pairs(signatures, 5, 5)


def test_clusters_are_transitive():
    assert duplicate_clusters(6, [(1, 3, 0.9), (3, 5, 0.8), (2, 4, 1.0)]) == [0, 1, 2, 1, 2, 1]


def test_dedup_finds_the_planted_duplicates_with_high_precision_and_recall(crawl):
    docs, texts = crawl
    # Exact hashing finds exactly the byte-identical copies' pairs.
    for copy, first in exact_duplicates(texts).items():
        assert docs[copy].group == docs[first].group and "exact_copy" in (docs[copy].kind, docs[first].kind)
    # Near-duplicates, scored on pairs: every two documents of one planted group should be paired.
    truth = {(i, j) for i, j in itertools.combinations(range(len(docs)), 2)
             if docs[i].group is not None and docs[i].group == docs[j].group
             and {docs[i].kind, docs[j].kind} <= {"clean", *DUPLICATE_KINDS}}
    clusters = duplicate_clusters(len(texts), near_duplicate_pairs(texts, threshold=0.7))
    found = {(i, j) for i, j in itertools.combinations(range(len(docs)), 2) if clusters[i] == clusters[j]}
    precision = len(found & truth) / len(found)
    recall = len(found & truth) / len(truth)
    assert len(truth) >= 57
    assert precision == 1.0
    assert recall >= 0.95
    # Each planted group keeps exactly one document.
    removed = near_duplicates_to_remove(texts, threshold=0.7)
    kept_groups = [docs[i].group for i in range(len(docs)) if i not in removed and docs[i].kind in DUPLICATE_KINDS]
    assert len(kept_groups) == len(set(kept_groups))


def test_distinct_passages_are_not_paired():
    passages = [p for name in ("emma", "persuasion") for p in paragraph_passages(name)[:150]]
    assert near_duplicate_pairs(passages, threshold=0.5, bands=32, rows=4) == []
