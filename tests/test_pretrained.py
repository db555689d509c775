"""The shipped Austen GPT (`shared.pretrained`): it loads, it has learned the novels, and a bad file is refused."""

from __future__ import annotations

import shutil

import pytest

from shared import files, pretrained
from shared.corpus import load_novel
from shared.evaluation import bits_per_byte, evaluate_text
from shared.pretrained import load_austen_gpt


def test_the_shipped_model_predicts_the_unseen_novel_far_better_than_chance():
    model, tokenizer = load_austen_gpt()
    assert not model.training and model.cfg["vocab_size"] == tokenizer.vocab_size == 4096
    text = load_novel("persuasion")[:30_000]  # held out from its training
    score = evaluate_text(model, text, tokenizer, "cpu", batch_size=16)
    # Guessing uniformly among 4,096 ids costs 12 bits per token, about 3.4 bits per byte here;
    # the shipped model scores about 1.7 on the whole novel (shared/data/models/README.md).
    assert bits_per_byte(score.nll_nats, score.num_bytes) < 1.9


def test_a_missing_model_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "AUSTEN_GPT_PATH", tmp_path / "austen-gpt.safetensors")
    with pytest.raises(FileNotFoundError, match="pretrained model is missing.*git checkout"):
        load_austen_gpt()


def test_a_corrupt_model_file_is_refused(monkeypatch, tmp_path):
    (tmp_path / "models").mkdir()
    shutil.copy(files.DATA_DIR / "SHA256SUMS", tmp_path / "SHA256SUMS")
    data = bytearray(pretrained.AUSTEN_GPT_PATH.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last weight
    (tmp_path / pretrained.AUSTEN_GPT).write_bytes(bytes(data))
    monkeypatch.setattr(files, "DATA_DIR", tmp_path)  # read_shipped_file reads it at each call
    monkeypatch.setattr(pretrained, "AUSTEN_GPT_PATH", tmp_path / pretrained.AUSTEN_GPT)
    with pytest.raises(ValueError, match="austen-gpt.safetensors has SHA-256 .*: the file is corrupt or was edited"):
        load_austen_gpt()
