"""Checks for chapter 9's exercises (the data pipeline): a quality rule, Jaccard, LSH bands, a token file."""

from __future__ import annotations

import numpy as np

from shared.checks.common import correct, not_attempted
from shared.dedup import lsh_probability
from shared.toy_crawl import paragraph_passages

SHOUTING_EXAMPLES = [  # (text, should the rule flag it?)
    ("BUY NOW!!! THE BEST PRICES ON ALL CLASSIC NOVELS. FREE DELIVERY TODAY ONLY.", True),
    ("HUGE SALE on every book in the SHOP, ALL WEEKEND", True),  # 22 of 38 letters are capitals
    ("Mr. Knightley and Miss Woodhouse walked to HARTFIELD together that morning.", False),
    ("NEW ARRIVALS: the complete works of Jane Austen, beautifully bound", False),  # 13 of 55
    ("12345 678 !!! ???", False),  # no letters at all
]


def check_exercise_9_1(shouting) -> None:
    """Exercise 9.1: a quality rule `shouting(text) -> bool`, True when more than half of the letters are capitals."""
    if not_attempted("9.1", shouting):
        return
    assert callable(shouting), "shouting should be a function: def shouting(text: str) -> bool"
    for text, expected in SHOUTING_EXAMPLES:
        got = shouting(text)
        assert bool(got) == expected, (
            f"shouting({text!r}) returned {got}, expected {expected}: count the capitals among the letters only "
            "(str.isalpha, str.isupper), and say True only when they are more than half of the letters."
        )
    passages = paragraph_passages("emma")
    flagged = [p for p in passages if shouting(p)]
    assert not flagged, f"the rule flags {len(flagged)} genuine passages of Emma, e.g. {flagged[0][:80]!r}"
    correct("9.1", f"none of Emma's {len(passages)} passages is flagged; shouted adverts are.")


def check_exercise_9_2(jaccard_value) -> None:
    """Exercise 9.2: Jaccard of the word 2-shingles of 'the cat sat on the mat' and 'the cat sat on a mat'."""
    if not_attempted("9.2", jaccard_value):
        return
    value = float(jaccard_value)
    if abs(value - 3 / 5) < 1e-6:
        raise AssertionError("3/5 divides the shared shingles by the shingles of one sentence; Jaccard divides "
                             "by the union: every distinct shingle of either sentence.")
    assert abs(value - 3 / 7) < 1e-6, (
        f"{value:.4f} is not it. Write out both sets of 2-word shingles ('the cat', 'cat sat', ...), count the "
        "ones they share and the distinct ones of both together, and divide."
    )
    correct("9.2", "3 shared shingles ('the cat', 'cat sat', 'sat on') out of 7 distinct ones: 3/7 = 0.429.")


def check_exercise_9_3(bands, rows) -> None:
    """Exercise 9.3: bands x rows = 120 slots; J = 0.8 pairs found with p >= 0.99, J = 0.4 pairs with p <= 0.1."""
    if not_attempted("9.3", bands, rows):
        return
    assert int(bands) == bands and int(rows) == rows and bands > 0 and rows > 0, "bands and rows are positive integers"
    assert bands * rows == 120, f"{bands} bands of {rows} rows use {bands * rows} slots; the signature has 120"
    high, low = float(lsh_probability(0.8, bands, rows)), float(lsh_probability(0.4, bands, rows))
    assert high >= 0.99, (
        f"with {bands} bands of {rows} rows a pair with Jaccard 0.8 becomes a candidate with probability {high:.3f} "
        "< 0.99: use more bands (of fewer rows) so that near-duplicates are missed less often."
    )
    assert low <= 0.1, (
        f"with {bands} bands of {rows} rows a pair with Jaccard 0.4 becomes a candidate with probability {low:.3f} "
        "> 0.1: use longer bands (more rows) so that merely similar pairs rarely collide."
    )
    correct("9.3", f"P(candidate) is {high:.4f} at J = 0.8 and {low:.4f} at J = 0.4; the S-curve's midpoint is "
             f"about (1/{bands})^(1/{rows}) = {(1 / bands) ** (1 / rows):.2f}.")


def check_exercise_9_4(num_documents, longest_document, token_file) -> None:
    """Exercise 9.4: the number of documents in a token file, and the longest one's length in tokens (without
    its <|endoftext|>), computed from the memory-mapped ids."""
    if not_attempted("9.4", num_documents, longest_document):
        return
    ends = np.flatnonzero(np.asarray(token_file.tokens) == token_file.eot_id)
    lengths = np.diff(np.concatenate([[-1], ends])) - 1
    assert int(num_documents) == len(ends), (
        f"{num_documents} documents, but the file has {len(ends)} <|endoftext|> ids, one after each document: "
        "count the positions where tokens == eot_id."
    )
    if int(longest_document) == int(lengths.max()) + 1:
        raise AssertionError("that counts the <|endoftext|> after the document too: leave it out.")
    assert int(longest_document) == int(lengths.max()), (
        f"the longest document is not {longest_document} tokens long. Find the <|endoftext|> positions "
        "(np.flatnonzero), take the gaps between them (np.diff), and remember each gap includes one end token."
    )
    correct("9.4", f"{len(ends)} documents; the longest is {int(lengths.max())} tokens, the mean "
             f"{lengths.mean():.0f}.")
