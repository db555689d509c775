"""Chapter 9's token file: the round trip, batches, bounded memory while writing, and the errors."""

import json
import tracemalloc

import numpy as np
import pytest
import torch

from shared.dataloader import join_documents
from shared.pretrained import load_austen_gpt
from shared.token_file import TokenFileWriter, get_batch, open_token_file, write_token_file
from shared.tokenization import get_gpt2_tokenizer
from shared.toy_crawl import paragraph_passages

DOCUMENTS = ["It is a truth universally acknowledged.", "", "Emma Woodhouse, handsome,\nclever, and rich.",
             "A literal <|endoftext|> in the text stays text.", "£ and ﬁ and 😀"]


@pytest.fixture(scope="module")
def austen_tokenizer():
    return load_austen_gpt()[1]


@pytest.mark.parametrize("which", ["gpt2", "austen"])
def test_round_trip(tmp_path, which, austen_tokenizer):
    tokenizer = get_gpt2_tokenizer() if which == "gpt2" else austen_tokenizer
    token_file = write_token_file(tmp_path / "corpus.bin", DOCUMENTS, tokenizer, chunk_tokens=7)
    assert isinstance(token_file.tokens, np.memmap) and token_file.tokens.dtype == np.uint16
    expected = [t for doc in DOCUMENTS for t in tokenizer.encode_ordinary(doc) + [tokenizer.eot_token]]
    assert token_file.tokens.tolist() == expected
    assert len(token_file) == len(expected) and token_file.num_documents == len(DOCUMENTS)
    assert int((token_file.tokens == token_file.eot_id).sum()) == len(DOCUMENTS)  # the literal one stays text
    reopened = open_token_file(tmp_path / "corpus.bin")
    rebuilt = reopened.load_tokenizer()
    assert rebuilt.decode(reopened.tokens.tolist()) == "".join(doc + "<|endoftext|>" for doc in DOCUMENTS)
    assert reopened.tokenizer_name == ("gpt2" if which == "gpt2" else "bpe")
    assert (tmp_path / "corpus.bin").stat().st_size == 2 * len(expected)


def test_equals_join_documents_on_real_text(tmp_path):
    tokenizer = get_gpt2_tokenizer()
    passages = paragraph_passages("persuasion")[:50]
    token_file = write_token_file(tmp_path / "p.bin", iter(passages), tokenizer, chunk_tokens=1000)
    assert token_file.tokens.tolist() == join_documents(passages, tokenizer)
    assert np.array_equal(np.fromfile(tmp_path / "p.bin", dtype=np.uint16), token_file.tokens)  # nanoGPT's layout


def test_batches_are_shifted_windows_and_seeded(tmp_path):
    token_file = write_token_file(tmp_path / "p.bin", paragraph_passages("emma")[:20], get_gpt2_tokenizer())
    x, y = get_batch(token_file.tokens, 4, 16, torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    stream = token_file.tokens.astype(np.int64)
    for row in x:  # each row is a real window of the file
        starts = np.flatnonzero(stream[: len(stream) - 16] == row[0].item())
        assert any(np.array_equal(stream[s : s + 16], row.numpy()) for s in starts)
    x2, _ = get_batch(token_file.tokens, 4, 16, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="needs 100001"):
        get_batch(token_file.tokens, 1, 100_000)


def many_documents(count: int, base: str):
    """A lazy corpus: `count` documents of ~10 kB each, made one at a time, never all in memory."""
    for i in range(count):
        yield f"Document {i}. {base}"


def peak_while_writing(path, count: int) -> int:
    """The most memory Python allocated while `count` documents were written."""
    tokenizer = get_gpt2_tokenizer()
    base = " ".join(paragraph_passages("persuasion")[0].split() * 10)
    tokenizer.encode_ordinary(base)
    tracemalloc.start()
    try:
        write_token_file(path, many_documents(count, base), tokenizer, chunk_tokens=1 << 14)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_writing_takes_bounded_memory_however_large_the_corpus(tmp_path):
    small = peak_while_writing(tmp_path / "small.bin", 50)
    large = peak_while_writing(tmp_path / "large.bin", 400)  # ~4 MB of text, ~2 MB of tokens on disk
    assert (tmp_path / "large.bin").stat().st_size > 1_500_000
    # One document's ids and the 32 kB chunk buffer: a few hundred kB, far below the corpus ...
    assert large < 500_000, f"peak {large:,} bytes"
    assert large < 1.5 * small  # ... and not growing with it
    assert open_token_file(tmp_path / "large.bin").num_documents == 400


class HugeVocabulary:
    n_vocab = 100_277  # e.g. GPT-4's cl100k_base
    eot_token = 100_257


def test_a_vocabulary_too_large_for_uint16_is_refused(tmp_path):
    with pytest.raises(ValueError, match="100,277 ids, but a uint16 token file holds ids up to 65,535"):
        TokenFileWriter(tmp_path / "x.bin", HugeVocabulary())


def test_a_file_that_is_not_a_token_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no token file"):
        open_token_file(tmp_path / "missing.bin")
    (tmp_path / "notes.txt").write_text("just some text")
    with pytest.raises(ValueError, match="not a token file written by write_token_file"):
        open_token_file(tmp_path / "notes.txt")
    (tmp_path / "notes.txt.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="does not describe a uint16 token file"):
        open_token_file(tmp_path / "notes.txt")
    (tmp_path / "notes.txt.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        open_token_file(tmp_path / "notes.txt")


def test_a_truncated_file_is_refused(tmp_path):
    path = tmp_path / "corpus.bin"
    write_token_file(path, DOCUMENTS, get_gpt2_tokenizer())
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated or was changed"):
        open_token_file(path)


def test_a_failed_write_leaves_no_file(tmp_path):
    def broken():
        yield "fine"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_token_file(tmp_path / "c.bin", broken(), get_gpt2_tokenizer())
    assert list(tmp_path.iterdir()) == []


def test_a_sidecar_written_before_the_one_tokenizer_description_still_opens(tmp_path, austen_tokenizer):
    """Older sidecars named the tokenizer with "name" where checkpoints and new sidecars say "kind"."""
    token_file = write_token_file(tmp_path / "old.bin", DOCUMENTS, austen_tokenizer)
    sidecar = tmp_path / "old.bin.json"
    header = json.loads(sidecar.read_text())
    assert header["tokenizer"]["kind"] == "bpe" and header["tokenizer"]["vocab_size"] == 4096
    header["tokenizer"] = {"name": "bpe", "vocab_size": 4096, "json": header["tokenizer"]["json"]}
    sidecar.write_text(json.dumps(header))
    reopened = open_token_file(tmp_path / "old.bin")
    assert reopened.tokenizer_name == "bpe"
    assert reopened.load_tokenizer().encode("Emma was") == austen_tokenizer.encode("Emma was")
    assert reopened.tokens.tolist() == token_file.tokens.tolist()
