"""The tokenizers: the book's simple ones, BPE training, and GPT-2 compatibility with tiktoken."""

import base64
import json
import random
import tracemalloc
from collections import Counter

import pytest
import regex
import tiktoken
from hypothesis import given
from hypothesis import strategies as st

from shared.tokenization import (
    GPT2_RANKS_PATH,
    GPT2_SPLIT_PATTERN,
    BPETokenizer,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    build_vocab,
    get_gpt2_bpe_tokenizer,
    get_gpt2_tokenizer,
    load_tiktoken_ranks,
    str_to_token,
    token_to_str,
)

SAMPLE = '"It\'s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'


# -- the book's simple tokenizers ---------------------------------------------------------------

def test_simple_tokenizer_v1_round_trip():
    tokenizer = SimpleTokenizerV1(build_vocab(SAMPLE))
    ids = tokenizer.encode(SAMPLE)
    assert len(ids) == 21
    # As in the book, decoding restores the words but not every space: the regex split lost them.
    assert tokenizer.decode(ids) == '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'


def test_simple_tokenizer_v1_unknown_word_names_it():
    tokenizer = SimpleTokenizerV1(build_vocab(SAMPLE))
    with pytest.raises(ValueError, match=r"not in the vocabulary.*'Hello'.*SimpleTokenizerV2"):
        tokenizer.encode("Hello, do you like tea?")


def test_simple_tokenizer_v1_unknown_id():
    tokenizer = SimpleTokenizerV1(build_vocab("a b"))
    with pytest.raises(ValueError, match=r"token id\(s\) \[7\]"):
        tokenizer.decode([0, 7])


def test_simple_tokenizer_v2_maps_unknown_words_to_unk():
    vocab = build_vocab(SAMPLE, special_tokens=["<|endoftext|>", "<|unk|>"])
    tokenizer = SimpleTokenizerV2(vocab)
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == (
        "<|unk|>, <|unk|> you <|unk|> <|unk|> <|unk|> <|endoftext|> <|unk|> the <|unk|> <|unk|> "
        "<|unk|> the <|unk|>."
    )


def test_simple_tokenizer_v2_needs_unk():
    with pytest.raises(ValueError, match="<\\|unk\\|>"):
        SimpleTokenizerV2(build_vocab(SAMPLE))


def test_build_vocab_puts_special_tokens_last():
    vocab = build_vocab("b a b", special_tokens=["<|endoftext|>", "<|unk|>"])
    assert vocab == {"a": 0, "b": 1, "<|endoftext|>": 2, "<|unk|>": 3}


# -- BPE training ---------------------------------------------------------------------------------

def naive_train(text, vocab_size, special_tokens=()):
    """Reference trainer: recount every pair before every merge (slow, obviously right)."""
    pieces = []
    chunks = regex.split("|".join(regex.escape(s) for s in special_tokens), text) if special_tokens else [text]
    for chunk in chunks:
        pieces.extend(regex.findall(GPT2_SPLIT_PATTERN, chunk))
    words = Counter(tuple(bytes([b]) for b in p.encode()) for p in pieces)
    merges = []
    while 256 + len(merges) + len(special_tokens) < vocab_size:
        counts = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break
        best = max(counts, key=lambda pair: (counts[pair], pair))
        merges.append(best)
        merged = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def test_train_hand_checked_example():
    # aaabdaaabac: (a,a) occurs 4 times; then (aa,a) and (a,b) tie at 2 and the greater pair,
    # (b"aa", b"a"), wins; then (aaa,b); then four pairs tie at 1 and (b"d", b"aaab") is greatest.
    tokenizer = BPETokenizer.train("aaabdaaabac", vocab_size=260)
    assert tokenizer.merges == [(b"a", b"a"), (b"aa", b"a"), (b"aaa", b"b"), (b"d", b"aaab")]
    assert tokenizer.merge_counts == [4, 2, 2, 1]
    assert tokenizer.encode("aaabdaaabac") == [258, 259, ord("a"), ord("c")]
    assert tokenizer.vocab[259] == b"daaab"


def test_train_never_merges_across_pieces():
    # Pre-tokenization gives "ab", " ab", " ab": a space joins the word after it, never the one before.
    tokenizer = BPETokenizer.train("ab ab ab", vocab_size=300)
    assert tokenizer.merges == [(b"a", b"b"), (b" ", b"ab")]
    assert tokenizer.vocab_size == 258  # no pair is left to merge, so training stops early


def test_train_never_merges_special_tokens():
    text = "hello<|endoftext|>hello<|endoftext|>world<|endoftext|>"
    tokenizer = BPETokenizer.train(text, vocab_size=262, special_tokens=["<|endoftext|>"])
    assert all(b"<|" not in a + b and b"|>" not in a + b for a, b in tokenizer.merges)
    assert tokenizer.vocab_size == 262
    eot = tokenizer.special_tokens["<|endoftext|>"]
    assert eot == 261  # special tokens come after the merges, as in GPT-2
    assert tokenizer.encode(text, allowed_special="all").count(eot) == 3


@given(st.text(alphabet="ab c\n'é", min_size=1, max_size=60), st.integers(256, 300))
def test_train_matches_naive_recount(text, vocab_size):
    assert BPETokenizer.train(text, vocab_size).merges == naive_train(text, vocab_size)


def test_train_matches_naive_recount_on_austen():
    text = (GPT2_RANKS_PATH.parent.parent / "austen" / "persuasion.txt").read_text()[:20_000]
    tokenizer = BPETokenizer.train(text, 400, special_tokens=["<|endoftext|>"])
    assert tokenizer.merges == naive_train(text, 400, special_tokens=["<|endoftext|>"])


def test_train_is_deterministic():
    text = (GPT2_RANKS_PATH.parent.parent / "austen" / "emma.txt").read_text()[:30_000]
    first = BPETokenizer.train(text, 500)
    second = BPETokenizer.train(text, 500)
    assert first.merges == second.merges and first.vocab == second.vocab


def test_train_vocab_size_too_small():
    with pytest.raises(ValueError, match=r"vocab_size=200 is too small.*at least 257"):
        BPETokenizer.train("text", vocab_size=200, special_tokens=["<|endoftext|>"])


@given(st.text(max_size=200))
def test_trained_tokenizer_round_trips(text):
    tokenizer = _small_trained()
    assert tokenizer.decode(tokenizer.encode(text, disallowed_special=())) == text


def _small_trained(cache=[]):  # noqa: B006 - a tiny module-level cache for the property test
    if not cache:
        text = (GPT2_RANKS_PATH.parent.parent / "austen" / "emma.txt").read_text()[:50_000]
        cache.append(BPETokenizer.train(text, 600, special_tokens=["<|endoftext|>"]))
    return cache[0]


# -- saving and loading -------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    tokenizer = _small_trained()
    path = tmp_path / "tok.json"
    tokenizer.save(path)
    data = json.loads(path.read_text())
    assert data["merges"][0] == " ".join(token_to_str(t) for t in tokenizer.merges[0])
    loaded = BPETokenizer.load(path)
    assert loaded.vocab == tokenizer.vocab and loaded.merges == tokenizer.merges
    assert loaded.special_tokens == tokenizer.special_tokens
    text = "Emma Woodhouse, handsome, clever, and rich<|endoftext|>"
    assert loaded.encode(text, allowed_special="all") == tokenizer.encode(text, allowed_special="all")
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left nothing behind


def test_save_load_keeps_tokens_with_equal_bytes(tmp_path):
    # "abc" is built twice, as ab+c and as a+bc: both ids must survive a save and load.
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab", 257: b"abc", 258: b"bc", 259: b"abc"}
    merges = [(b"a", b"b"), (b"ab", b"c"), (b"b", b"c"), (b"a", b"bc")]
    tokenizer = BPETokenizer(vocab, merges)
    tokenizer.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(tmp_path / "tok.json")
    assert loaded.vocab == vocab and loaded.merges == merges
    assert loaded.decode([259, 257]) == "abcabc"


def test_load_rejects_a_corrupt_file(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text('{"format": "bpe-tokenizer", "version": 1, "vocab": {}}')
    with pytest.raises(ValueError, match="not a valid tokenizer file"):
        BPETokenizer.load(path)


def test_token_strings_round_trip():
    for token in [b" the", b"\n\n", bytes(range(256))]:
        assert str_to_token(token_to_str(token)) == token
    assert token_to_str(b" the") == "Ġthe"


def test_construct_from_vocab_and_merges():
    trained = _small_trained()
    rebuilt = BPETokenizer(trained.vocab, trained.merges, special_tokens=["<|endoftext|>"])
    assert rebuilt.encode("Mr. Knightley") == trained.encode("Mr. Knightley")
    with pytest.raises(ValueError, match="not in vocab"):
        BPETokenizer({i: bytes([i]) for i in range(256)}, [(b"a", b"b")])


# -- GPT-2: the from-scratch encoder against tiktoken ---------------------------------------------

GPT2_CASES = [
    "Hello, world",
    "",
    " ",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nand\r\n\r\nwindows line ends\n\n\n",
    "I'm, you're, they've, he'll, we'd, it's, don't, CAN'T, O'Neil's",
    "Numbers: 3.14159, 1,000,000 and 2024-06-01; phone +1 (555) 010-9999",
    "unicode: naïve café, Zürich, Ångström, ﬁ ligature, ½ fractions",
    "emoji 👋🏽 family 👨‍👩‍👧 flags 🇯🇵 and ✓✔︎",
    "中文字符和日本語のテキスト、한국어",
    "Ελληνικά и русский текст",
    "symbols !!! ??? ... --- *** @@@ ### $$$ %%% ^^^ &&&",
    "code: def f(x):\n    return x ** 2  # square\n",
    "    indented\n        more indented",
    "a" * 300,
    "a" * 20_000,  # one long piece: merging must not be quadratic in its length
    base64.b64encode(random.Random(0).randbytes(6_000)).decode(),  # 8,000 characters, no spaces
    "Akwirw ier",
    "\u00a0non-breaking\u2009thin\u3000ideographic spaces",
    "zero\u200bwidth",
]


@pytest.fixture(scope="module")
def gpt2():
    return get_gpt2_tokenizer(), get_gpt2_bpe_tokenizer()


def test_gpt2_hello_world(gpt2):
    tiktoken_enc, bpe = gpt2
    assert tiktoken_enc.encode("Hello, world") == [15496, 11, 995]
    assert bpe.encode("Hello, world") == [15496, 11, 995]
    assert bpe.vocab_size == 50257 and len(bpe.merges) == 50000 and bpe.eot_token == 50256


@pytest.mark.parametrize("text", GPT2_CASES)
def test_gpt2_matches_tiktoken(gpt2, text):
    tiktoken_enc, bpe = gpt2
    assert bpe.encode(text) == tiktoken_enc.encode(text)
    assert bpe.decode(bpe.encode(text)) == text


@given(st.text(max_size=300))
def test_gpt2_matches_tiktoken_on_any_text(gpt2, text):
    tiktoken_enc, bpe = gpt2
    expected = tiktoken_enc.encode(text, disallowed_special=())
    assert bpe.encode(text, disallowed_special=()) == expected
    assert bpe.decode(expected) == text


def test_gpt2_matches_tiktoken_on_a_novel(gpt2):
    tiktoken_enc, bpe = gpt2
    text = (GPT2_RANKS_PATH.parent.parent / "austen" / "northangerabbey.txt").read_text()
    assert bpe.encode_ordinary(text) == tiktoken_enc.encode_ordinary(text)


@pytest.fixture(scope="module")
def gpt2_long_path(gpt2):
    """GPT-2 with every piece sent through the O(n log n) long-piece merger."""
    _, bpe = gpt2
    tokenizer = BPETokenizer(bpe.vocab, bpe.merges, special_tokens=bpe.special_tokens)
    tokenizer.long_piece = 0
    return tokenizer


@given(st.text(max_size=300))
def test_long_piece_path_matches_tiktoken(gpt2, gpt2_long_path, text):
    tiktoken_enc, _ = gpt2
    assert gpt2_long_path.encode(text, disallowed_special=()) == tiktoken_enc.encode(text, disallowed_special=())


def test_long_pieces_are_fast_and_exact(gpt2):
    # 20,000 random letters are one piece needing thousands of different merges; repeated passes
    # over it took seconds, the heap takes milliseconds.
    tiktoken_enc, bpe = gpt2
    letters = "".join(random.Random(1).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20_000))
    assert bpe.encode(letters) == tiktoken_enc.encode(letters)
    assert bpe.encode(letters[:300]) == tiktoken_enc.encode(letters[:300])  # just above the threshold


SPECIAL_CASES = [
    "<|endoftext|>",
    "The end.<|endoftext|>A new story",
    "<|endoftext|><|endoftext|>",
    "half <|endoftext| and <|endoftext|>|> nested",
]


@pytest.mark.parametrize("text", SPECIAL_CASES)
def test_gpt2_special_tokens_like_tiktoken(gpt2, text):
    tiktoken_enc, bpe = gpt2
    assert bpe.encode(text, allowed_special="all") == tiktoken_enc.encode(text, allowed_special="all")
    assert bpe.encode(text, allowed_special={"<|endoftext|>"}) == tiktoken_enc.encode(
        text, allowed_special={"<|endoftext|>"})
    assert bpe.encode(text, disallowed_special=()) == tiktoken_enc.encode(text, disallowed_special=())


def test_disallowed_special_token_is_a_clear_error(gpt2):
    _, bpe = gpt2
    with pytest.raises(ValueError, match=r"'<\|endoftext\|>'.*allowed_special=.*disallowed_special=\(\)"):
        bpe.encode("The end.<|endoftext|>")


def test_unknown_allowed_special_is_an_error(gpt2):
    _, bpe = gpt2
    with pytest.raises(ValueError, match="not special tokens"):
        bpe.encode("hi", allowed_special={"<|im_start|>"})


def test_longest_special_token_wins():
    tokenizer = BPETokenizer(special_tokens=["<|a|>", "<|a|><|b|>"])
    ids = tokenizer.encode("x<|a|><|b|>y<|a|>", allowed_special="all")
    assert ids == [ord("x"), tokenizer.special_tokens["<|a|><|b|>"], ord("y"), tokenizer.special_tokens["<|a|>"]]


PIECES = st.sampled_from(list("ab '\n\t.9é👋") + ["<|endoftext|>", "<|endof", "text|>", "  ", "'re"])


@given(st.lists(st.lists(PIECES, max_size=8).map("".join), max_size=12))
def test_encode_iterable_equals_encode(gpt2, chunks):
    _, bpe = gpt2
    expected = bpe.encode("".join(chunks), allowed_special="all")
    assert list(bpe.encode_iterable(chunks, allowed_special="all")) == expected


def test_encode_iterable_streams_a_file(gpt2, tmp_path):
    tiktoken_enc, bpe = gpt2
    text = (GPT2_RANKS_PATH.parent.parent / "austen" / "persuasion.txt").read_text()[:100_000]
    path = tmp_path / "book.txt"
    path.write_text(text)
    with open(path) as f:
        assert list(bpe.encode_iterable(f)) == tiktoken_enc.encode(text)


def test_encode_iterable_holds_back_little_text(gpt2):
    # A generator of many lines: the encoder must yield ids long before the stream ends.
    _, bpe = gpt2
    produced = []

    def lines():
        for i in range(1000):
            produced.append(i)
            yield f"line {i} of a long file\n"

    stream = bpe.encode_iterable(lines())
    first = [next(stream) for _ in range(5)]
    assert first[:1] == bpe.encode("line") and len(produced) <= 2


def test_encode_iterable_memory_stays_flat():
    # 1.6 MB of text with ever-new words: neither the text, the ids nor the piece cache may pile up
    # (encoding it whole peaks near 45 MB; an unbounded cache alone reaches 14 MB).
    tokenizer = BPETokenizer.train("the cat sat on the mat " * 50, 300)
    tokenizer.cache_size = 1_000

    def lines():
        for i in range(40_000):
            yield f"word{i} and w{i * 7919} then some more text\n"

    tracemalloc.start()
    count = sum(1 for _ in tokenizer.encode_iterable(lines()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count > 400_000
    assert peak < 3_000_000, f"peak {peak / 1e6:.1f} MB"


def test_gpt2_rank_file_checksum(tmp_path):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_bytes(GPT2_RANKS_PATH.read_bytes().replace(b"IQ== 0", b"IQ== 9", 1))
    with pytest.raises(ValueError, match="corrupt or a different tokenizer"):
        load_tiktoken_ranks(bad, expected_sha256="306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930")
    garbage = tmp_path / "garbage.tiktoken"
    garbage.write_text("IQ== 0\nnot-base64!! x\n")
    with pytest.raises(ValueError, match="line 2"):
        load_tiktoken_ranks(garbage)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tiktoken_ranks(tmp_path / "missing.tiktoken")


def test_special_tokens_with_whitespace_are_refused():
    # The streaming encoder cuts text at whitespace; a special token containing some could be split.
    with pytest.raises(ValueError, match=r"special token '<\|end of text\|>' must .* contain no whitespace"):
        BPETokenizer(special_tokens=["<|end of text|>"])
    with pytest.raises(ValueError, match="non-empty"):
        BPETokenizer.train("some text", 300, special_tokens=[""])


# -- one interface and one description for every tokenizer the package trains with ----------------------


def test_gpt2s_encoding_and_bpe_satisfy_the_tokenizer_protocol_and_the_book_tokenizers_do_not():
    from shared.tokenization import Tokenizer

    bpe = BPETokenizer.train("the cat sat on the mat " * 20, 270, special_tokens=["<|endoftext|>"])
    gpt2 = get_gpt2_tokenizer()
    assert isinstance(bpe, Tokenizer) and isinstance(gpt2, Tokenizer) and isinstance(gpt2, tiktoken.Encoding)
    assert gpt2.vocab_size == gpt2.n_vocab == 50257
    assert not isinstance(SimpleTokenizerV1({"a": 0}), Tokenizer)


def test_a_description_rebuilds_the_same_tokenizer_and_older_forms_still_load():
    from shared.tokenization import describe_tokenizer, tokenizer_from_description

    bpe = BPETokenizer.train("the cat sat on the mat " * 20, 270, special_tokens=["<|endoftext|>"])
    text = "the mat sat<|endoftext|>on the cat"
    for description in (describe_tokenizer(bpe),
                        {"kind": "bpe", "json": bpe.to_json()},  # checkpoints before the one description
                        {"name": "bpe", "vocab_size": bpe.vocab_size, "json": bpe.to_json()}):  # old sidecars
        rebuilt = tokenizer_from_description(json.loads(json.dumps(description)))
        assert rebuilt.encode(text, allowed_special="all") == bpe.encode(text, allowed_special="all")
    assert describe_tokenizer(get_gpt2_tokenizer()) == {"kind": "gpt2", "vocab_size": 50257}
    plain = tiktoken.Encoding("gpt2", pat_str=GPT2_SPLIT_PATTERN, special_tokens={"<|endoftext|>": 50256},
                              mergeable_ranks=load_tiktoken_ranks(GPT2_RANKS_PATH))
    assert describe_tokenizer(plain)["kind"] == "gpt2"  # the book's tiktoken.get_encoding("gpt2") counts too
    assert tokenizer_from_description({"name": "gpt2"}) is get_gpt2_tokenizer()
    with pytest.raises(ValueError, match="cannot be rebuilt .*'sentencepiece'.*only 'bpe'"):
        tokenizer_from_description({"kind": "sentencepiece"})
    with pytest.raises(ValueError, match="cannot describe a SimpleTokenizerV1"):
        describe_tokenizer(SimpleTokenizerV1({"a": 0}))


def test_build_tokenizer_takes_gpt2_or_a_vocabulary_size():
    from shared.tokenization import build_tokenizer, vocab_size_of

    assert build_tokenizer("gpt2", "") is get_gpt2_tokenizer()
    assert vocab_size_of(build_tokenizer("270", "the cat sat on the mat " * 20)) <= 270
    with pytest.raises(ValueError, match="tokenizer 'big': use 'gpt2' or a vocabulary size"):
        build_tokenizer("big", "text")
    assert vocab_size_of(object()) is None
