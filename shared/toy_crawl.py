"""Chapter 9's practice data: a small, seeded "web crawl" made from the shipped novels, with labelled problems.

Real crawls mix good text with copies, near-copies, boilerplate, junk, spam and mangled Unicode.
`make_raw_crawl` plants each of these in known places among genuine Austen passages, so every
stage of the pipeline can be scored against the labels (what it removed, what it should have).
"""

from __future__ import annotations

import random
import textwrap
import warnings
from dataclasses import dataclass

from shared.corpus import NOVELS, load_novel
from shared.text_cleaning import normalize_text


def paragraph_passages(name: str, min_words: int = 150) -> list[str]:
    """A novel cut into passages of whole consecutive paragraphs, at least `min_words` words each.

    Headings (lines in capitals: the title, 'VOLUME I', 'CHAPTER IV') are left out; a short
    remainder at the end of the novel is dropped.
    """
    paragraphs = [p for p in normalize_text(load_novel(name)).split("\n\n") if p.strip() and not p.isupper()]
    paragraphs = [p for p in paragraphs if not p.startswith("By Jane Austen")]
    passages, current, words = [], [], 0
    for paragraph in paragraphs:
        current.append(paragraph)
        words += len(paragraph.split())
        if words >= min_words:
            passages.append("\n\n".join(current))
            current, words = [], 0
    return passages


def novel_passages(name: str, min_words: int = 150) -> list[str]:
    """Deprecated name of `paragraph_passages` (chapter 6's `classification.novel_passages` cuts a text)."""
    warnings.warn("shared.toy_crawl.novel_passages is now paragraph_passages.", DeprecationWarning, stacklevel=2)
    return paragraph_passages(name, min_words)


@dataclass
class CrawlDocument:
    """One crawled document: its text, what it is (`kind`), and `group`, shared by a passage and its copies."""

    text: str
    kind: str  # clean, messy_unicode, exact_copy, edited, rewrapped, header, spam, boilerplate, symbols, ...
    group: int | None = None  # index of the source passage; copies and near-copies share it; None for junk
    original: str | None = None  # for messy_unicode: the clean text it should normalise to


FILLER_WORDS = ("very", "quite", "rather", "indeed", "much", "really", "truly", "greatly")
ADVERTS = ("Win big tonight at the online casino: click here for 50 free spins!",
           "Earn bitcoin from home with our limited time offer.",
           "Doctors hate these weight loss pills. Order now and save!",
           "Need cash fast? Our payday loan is approved in minutes.")
MENU = ("Home | About | Books | Contact", "Accept all cookies", "Sign in to continue reading",
        "Subscribe to our newsletter", "Follow us on social media")


def edit_words(text: str, rng: random.Random, every: int = 50) -> str:
    """Replace about one word in `every` with a filler word: a near-copy that shares most shingles."""
    lines = [line.split(" ") for line in text.split("\n")]
    positions = [(i, j) for i, line in enumerate(lines) for j, word in enumerate(line) if word.isalpha()]
    for i, j in rng.sample(positions, max(1, len(positions) // every)):
        lines[i][j] = rng.choice(FILLER_WORDS)
    return "\n".join(" ".join(line) for line in lines)


def rewrap(text: str, width: int = 55) -> str:
    """The same words with every paragraph wrapped to another line width."""
    return "\n\n".join(textwrap.fill(" ".join(p.split()), width) for p in text.split("\n\n"))


def add_header(text: str, rng: random.Random) -> str:
    """A copy framed by a web page's byline and footer."""
    return (f"Posted by admin on page {rng.randint(2, 99)} | Share | Print\n\n{text}\n\n"
            "Read more classic fiction on our site. Leave a comment below!")


def mess_up_unicode(text: str, rng: random.Random) -> str:
    """The same text as a careless converter might leave it: curly quotes, ligatures, full-width
    letters, non-breaking and doubled spaces, zero-width and control characters, Windows line ends."""
    out = []
    opening = True
    for char in text:
        if char == '"':
            out.append("\u201c" if opening else "\u201d")
            opening = not opening
        elif char == "'":
            out.append("\u2019")
        elif char == " " and rng.random() < 0.05:
            out.append(rng.choice(["\u00a0", "  ", " \u200b", "\t"]))
        else:
            out.append(char)
    messy = "".join(out).replace("fi", "\ufb01").replace("ffl", "\ufb04")
    words = messy.split(" ")
    k = rng.randrange(len(words))
    if words[k].isascii() and words[k].isalpha():  # one word in full-width letters
        words[k] = "".join(chr(ord(c) + 0xFEE0) for c in words[k])
    k = rng.randrange(len(words))
    words[k] = words[k][:1] + "\x00" + words[k][1:]  # a stray NUL inside a word
    return " \r\n".join(" ".join(words).split("\n")) + "\n\n\n"


def junk_document(kind: str, rng: random.Random, passage: str) -> str:
    """One low-quality document of the given kind, the sort of page the quality filters exist for."""
    if kind == "boilerplate":  # the same few lines over and over
        return "\n".join(rng.choice(MENU) for _ in range(rng.randint(12, 30)))
    if kind == "symbols":
        tags = ["#sale", "#deal", "###", "$$$", "...", "#win", "@@@", "#free", "***"]
        return " ".join(rng.choice(tags) for _ in range(rng.randint(60, 120)))
    if kind == "fragment":  # a few words cut from a page
        words = passage.split()
        start = rng.randrange(len(words) - 40)
        return " ".join(words[start : start + rng.randint(5, 35)])
    if kind == "bullets":
        return "\n".join(f"• {' '.join(rng.sample(passage.split(), 8))}" for _ in range(rng.randint(8, 15)))
    if kind == "teaser":  # lines cut off with an ellipsis: 'Read more...'
        return "\n".join(" ".join(passage.split()[i * 9 : i * 9 + 8]) + "..." for i in range(rng.randint(8, 14)))
    raise ValueError(f"unknown junk kind {kind!r}")


PLANTED = {  # kind: how many documents of it the crawl gets (besides the clean passages)
    "messy_unicode": 20, "exact_copy": 25, "edited": 12, "rewrapped": 10, "header": 10, "spam": 15,
    "boilerplate": 10, "symbols": 10, "fragment": 15, "bullets": 6, "teaser": 6,
}


def make_raw_crawl(num_clean: int = 300, seed: int = 123) -> list[CrawlDocument]:
    """Genuine passages from all six novels plus the planted problems of `PLANTED`, shuffled (seeded)."""
    rng = random.Random(seed)
    pool = [p for name in NOVELS for p in paragraph_passages(name)]
    chosen = rng.sample(range(len(pool)), num_clean + PLANTED["messy_unicode"] + PLANTED["spam"])
    clean, messy, spam = (chosen[:num_clean], chosen[num_clean : num_clean + PLANTED["messy_unicode"]],
                          chosen[num_clean + PLANTED["messy_unicode"] :])
    docs = [CrawlDocument(pool[i], "clean", i) for i in clean]
    docs += [CrawlDocument(mess_up_unicode(pool[i], rng), "messy_unicode", i, pool[i]) for i in messy]
    for i in spam:  # an advert dropped between two paragraphs of a genuine passage
        paragraphs = pool[i].split("\n\n")
        paragraphs.insert(rng.randint(1, max(1, len(paragraphs) - 1)), rng.choice(ADVERTS))
        docs.append(CrawlDocument("\n\n".join(paragraphs), "spam", i))
    for kind, make in (("exact_copy", lambda t: t), ("edited", lambda t: edit_words(t, rng)),
                       ("rewrapped", rewrap), ("header", lambda t: add_header(t, rng))):
        for i in rng.sample(clean, PLANTED[kind]):
            docs.append(CrawlDocument(make(pool[i]), kind, i))
    for kind in ("boilerplate", "symbols", "fragment", "bullets", "teaser"):
        docs += [CrawlDocument(junk_document(kind, rng, pool[rng.choice(clean)]), kind) for _ in range(PLANTED[kind])]
    rng.shuffle(docs)
    return docs
