"""The corpus, the sliding-window dataset, the book's dataloader and document packing."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from shared import files
from shared.corpus import NOVELS, load_corpus, load_novel
from shared.dataloader import GPTDatasetV1, create_dataloader_v1, join_documents, pack_documents
from shared.tokenization import get_gpt2_tokenizer


class CharTokenizer:
    """One id per character: makes token counts obvious in tests."""

    eot_token = 0

    def encode(self, text, allowed_special=frozenset()):
        return [ord(c) for c in text]


def test_corpus_has_six_novels():
    corpus = load_corpus()
    assert len(corpus) == 6 == len(NOVELS)
    assert [len(text.encode()) for text in corpus] == [684768, 673688, 883028, 883280, 433411, 466854]
    assert load_novel("prideprejudice").startswith("PRIDE AND PREJUDICE")


def test_unknown_novel_lists_the_names():
    with pytest.raises(ValueError, match="unknown novel 'ulysses'.*prideprejudice"):
        load_novel("ulysses")


def test_corrupt_novel_is_detected(tmp_path, monkeypatch):
    (tmp_path / "austen").mkdir()
    (tmp_path / "austen" / "emma.txt").write_text("Emma, abridged.")
    (tmp_path / "SHA256SUMS").write_text((files.DATA_DIR / "SHA256SUMS").read_text())
    monkeypatch.setattr(files, "DATA_DIR", tmp_path)  # read_shipped_file reads it at each call
    with pytest.raises(ValueError, match="emma.txt has SHA-256 .*: the file is corrupt or was edited"):
        load_novel("emma")


@given(st.integers(2, 200), st.integers(1, 12), st.integers(1, 12))
def test_windows_are_shifted_by_one_for_any_stride(n_tokens, max_length, stride):
    text = "".join(chr(65 + i % 50) for i in range(n_tokens))
    if n_tokens < max_length + 1:
        with pytest.raises(ValueError, match=f"has {n_tokens} tokens.*needs at least {max_length + 1}"):
            GPTDatasetV1(text, CharTokenizer(), max_length, stride)
        return
    dataset = GPTDatasetV1(text, CharTokenizer(), max_length, stride)
    # The book's loop: range(0, len(token_ids) - max_length, stride).
    starts = list(range(0, n_tokens - max_length, stride))
    assert len(dataset) == len(starts)
    for idx, start in enumerate(starts):
        x, y = dataset[idx]
        assert x.tolist() == [ord(c) for c in text[start : start + max_length]]
        assert y.tolist() == [ord(c) for c in text[start + 1 : start + max_length + 1]]
    assert torch.equal(dataset[-1][0], dataset[len(dataset) - 1][0])
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_too_short_text_says_how_long_it_is():
    with pytest.raises(ValueError, match=r"has 4 tokens, but one window of max_length=256 needs at least 257"):
        create_dataloader_v1("Just four tokens.", max_length=256)


def test_loader_that_would_be_empty_is_an_error():
    text = load_novel("persuasion")[:2000]  # about 450 tokens: 3 windows of 128 with stride 128
    with pytest.raises(ValueError, match="fewer than batch_size=8.*drop_last"):
        create_dataloader_v1(text, batch_size=8, max_length=128, stride=128)


def test_book_dataloader_first_batch():
    text = load_novel("prideprejudice")
    torch.manual_seed(123)
    loader = create_dataloader_v1(text, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs.shape == targets.shape == (8, 4)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert torch.equal(inputs[1:, 0], targets[:-1, -1])  # stride == max_length: no gaps, no overlap
    ids = get_gpt2_tokenizer().encode(text[:200])
    assert inputs[0].tolist() == ids[:4]


def test_join_and_pack_documents():
    tokenizer = get_gpt2_tokenizer()
    docs = ["First document.", "Second one, a little longer.", "Third."]
    ids = join_documents(docs, tokenizer)
    assert ids.count(tokenizer.eot_token) == 3 and ids[-1] == tokenizer.eot_token
    assert tokenizer.decode(ids) == "<|endoftext|>".join(docs) + "<|endoftext|>"
    dataset = pack_documents(docs, tokenizer, max_length=4)
    # Back-to-back blocks: block i's inputs start where block i-1's inputs ended.
    assert len(dataset) == (len(ids) - 5) // 4 + 1
    flat = torch.cat([dataset[i][0] for i in range(len(dataset))]).tolist()
    assert flat == ids[: len(flat)]


def test_join_needs_an_end_of_text_token():
    class NoEot(CharTokenizer):
        eot_token = None

    with pytest.raises(ValueError, match="no <\\|endoftext\\|>"):
        join_documents(["a"], NoEot())
