"""Chapter 9's first stages of a pretraining-data pipeline: normalise text, filter by quality, filter by keywords.

`normalize_text` makes equal-looking text byte-equal (Unicode NFKC, straight quotes, no control
characters, tidy whitespace); `quality_problems` applies the document-level heuristics of
DeepMind's Gopher (Rae et al. 2021, MassiveText) and Google's C4 (Raffel et al. 2020), with
thresholds that keep every passage of the six shipped novels; `keyword_hits` finds words from a
block list, as C4 did with its list of unwanted words.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

# Curly quotes and primes become the straight ASCII ones the shipped novels use (our policy: one
# spelling of each quote, so that copies differing only in their quotes hash the same).
QUOTE_MAP = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                           "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")  # any whitespace except newlines
_LINE_END_SPACE = re.compile(r" ?\n ?")  # after the runs are collapsed, one space at most either side
_BLANK_LINES = re.compile(r"\n{3,}")
_NOT_PLAIN_ASCII = re.compile(r"[^\x20-\x7e\n\t]")  # the only characters that can be invisible


def _drop_if_invisible(match: re.Match) -> str:
    """Control and format characters (NUL, escape, zero-width space, soft hyphen...) become ''."""
    return "" if unicodedata.category(match.group()) in ("Cc", "Cf") else match.group()


def normalize_text(text: str) -> str:
    """Text in one canonical form: NFKC, straight quotes, invisible characters dropped, whitespace tidied.

    NFKC folds compatibility characters into their plain forms (the ligature 'ﬁ' into 'fi', full-width
    'Ａ' into 'A', a non-breaking space into a space). Then runs of spaces and tabs become one
    space, lines lose their trailing spaces, at most one blank line separates paragraphs, and
    the ends are stripped.
    """
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _NOT_PLAIN_ASCII.sub(_drop_if_invisible, text.translate(QUOTE_MAP))
    text = _LINE_END_SPACE.sub("\n", _HORIZONTAL_SPACE.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


# -- quality filters ----------------------------------------------------------------------------------

WORD = re.compile(r"\S+")
WORD_WITH_A_LETTER = re.compile(r"\S*[^\W\d_]\S*")
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Gopher's list
STOP_WORD = re.compile(rf"\b(?:{'|'.join(STOP_WORDS)})\b", re.IGNORECASE)
BULLETS = ("•", "*", "-", "–", "·", "►", "▪")
QUALITY_THRESHOLDS = {
    # Gopher (Rae et al. 2021, appendix A.1.1): between 50 and 100,000 words ...
    "min_words": 50,
    "max_words": 100_000,
    # ... a mean word length of 3 to 10 characters ...
    "min_mean_word_length": 3.0,
    "max_mean_word_length": 10.0,
    # ... at most 0.1 hash symbols or ellipses per word ...
    "max_symbol_to_word_ratio": 0.1,
    # ... at most 90% of lines starting with a bullet, at most 30% ending with an ellipsis ...
    "max_bullet_line_fraction": 0.9,
    "max_ellipsis_line_fraction": 0.3,
    # ... at least 80% of words containing a letter, and at least two of the stop words.
    "min_alphabetic_word_fraction": 0.8,
    "min_stop_words": 2,
    # Gopher's repetition filter: at most 30% of lines duplicates of another line.
    "max_duplicate_line_fraction": 0.3,
}


def quality_signals(text: str) -> dict[str, float]:
    """The numbers the quality rules look at, for one (normalised) document."""
    words = WORD.findall(text)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    num_words, num_lines = max(len(words), 1), max(len(lines), 1)
    return {
        "words": len(words),
        "mean_word_length": sum(map(len, words)) / num_words,
        "symbol_to_word_ratio": (text.count("#") + text.count("...") + text.count("…")) / num_words,
        "bullet_line_fraction": sum(line.startswith(BULLETS) for line in lines) / num_lines,
        "ellipsis_line_fraction": sum(line.endswith(("...", "…")) for line in lines) / num_lines,
        "duplicate_line_fraction": sum(n for n in Counter(lines).values() if n > 1) / num_lines,
        "alphabetic_word_fraction": len(WORD_WITH_A_LETTER.findall(text)) / num_words,
        "stop_words": len(STOP_WORD.findall(text)),
    }


def quality_problems(text: str, thresholds: dict | None = None) -> list[str]:
    """Why a document fails the quality rules (an empty list: it passes), e.g. ['too few words (12 < 50)']."""
    t = QUALITY_THRESHOLDS if thresholds is None else {**QUALITY_THRESHOLDS, **thresholds}
    s = quality_signals(text)
    checks = [
        (s["words"] < t["min_words"], f"too few words ({s['words']} < {t['min_words']})"),
        (s["words"] > t["max_words"], f"too many words ({s['words']} > {t['max_words']})"),
        (not t["min_mean_word_length"] <= s["mean_word_length"] <= t["max_mean_word_length"],
         f"mean word length {s['mean_word_length']:.1f} outside {t['min_mean_word_length']}-"
         f"{t['max_mean_word_length']}"),
        (s["symbol_to_word_ratio"] > t["max_symbol_to_word_ratio"],
         f"symbol-to-word ratio {s['symbol_to_word_ratio']:.2f} > {t['max_symbol_to_word_ratio']}"),
        (s["bullet_line_fraction"] > t["max_bullet_line_fraction"],
         f"{s['bullet_line_fraction']:.0%} of lines start with a bullet"),
        (s["ellipsis_line_fraction"] > t["max_ellipsis_line_fraction"],
         f"{s['ellipsis_line_fraction']:.0%} of lines end with an ellipsis"),
        (s["duplicate_line_fraction"] > t["max_duplicate_line_fraction"],
         f"{s['duplicate_line_fraction']:.0%} of lines are repeated"),
        (s["alphabetic_word_fraction"] < t["min_alphabetic_word_fraction"],
         f"only {s['alphabetic_word_fraction']:.0%} of words contain a letter"),
        (s["stop_words"] < t["min_stop_words"], f"{s['stop_words']} stop words (< {t['min_stop_words']})"),
    ]
    return [reason for failed, reason in checks if failed]


# -- keyword filter -----------------------------------------------------------------------------------

# A small, tame block list of advertising spam; real pipelines use long lists (C4 used one of
# about 400 unwanted words) and drop any page containing one of them.
BLOCKLIST = ("casino", "jackpot", "free spins", "viagra", "crypto", "bitcoin", "payday loan", "click here",
             "weight loss pills", "limited time offer")


def keyword_hits(text: str, keywords: Iterable[str] = BLOCKLIST) -> list[str]:
    """The block-list entries found in `text` as whole words, ignoring case (an empty list: none)."""
    return sorted(set(_keyword_regex(tuple(keywords)).findall(text.lower())))


@lru_cache(maxsize=16)
def _keyword_regex(keywords: tuple[str, ...]) -> re.Pattern:
    """One pattern for the whole list, compiled once: each entry lower-cased, matched between word boundaries."""
    return re.compile(rf"\b(?:{'|'.join(re.escape(word.lower()) for word in keywords)})\b")
