"""The shipped Austen GPT (`shared.pretrained`): it loads, it has learned the novels, and a bad file is refused."""

from __future__ import annotations

import shutil

import pytest

from shared import files, pretrained
from shared.corpus import load_novel
from shared.evaluation import bits_per_byte, evaluate_text
from shared.pretrained import load_austen_gpt, load_austen_gpt_sft


def test_the_shipped_model_predicts_the_unseen_novel_far_better_than_chance():
    model, tokenizer = load_austen_gpt()
    assert not model.training and model.cfg["vocab_size"] == tokenizer.vocab_size == 4096
    text = load_novel("persuasion")[:30_000]  # held out from its training
    score = evaluate_text(model, text, tokenizer, "cpu", batch_size=16)
    # Guessing uniformly among 4,096 ids costs 12 bits per token, about 3.4 bits per byte here;
    # the shipped model scores about 1.7 on the whole novel (shared/data/models/README.md).
    assert bits_per_byte(score.nll_nats, score.num_bytes) < 1.9


SHIPPED = [(load_austen_gpt, pretrained.AUSTEN_GPT, "pretrained model"),
           (load_austen_gpt_sft, pretrained.AUSTEN_GPT_SFT, "chapter 7 model")]


@pytest.mark.parametrize(("load", "name", "what"), SHIPPED, ids=["pretrained", "sft"])
def test_a_missing_model_file_is_named(monkeypatch, tmp_path, load, name, what):
    monkeypatch.setattr(pretrained, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{what} is missing.*git checkout"):
        load()


@pytest.mark.parametrize(("load", "name", "what"), SHIPPED, ids=["pretrained", "sft"])
def test_a_corrupt_model_file_is_refused(monkeypatch, tmp_path, load, name, what):
    (tmp_path / "models").mkdir()
    shutil.copy(files.DATA_DIR / "SHA256SUMS", tmp_path / "SHA256SUMS")
    data = bytearray((files.DATA_DIR / name).read_bytes())
    data[-1] ^= 1  # one flipped bit in the last weight
    (tmp_path / name).write_bytes(bytes(data))
    monkeypatch.setattr(files, "DATA_DIR", tmp_path)  # read_shipped_file reads it at each call
    monkeypatch.setattr(pretrained, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=f"{name.split('/')[-1]} has SHA-256 .*: the file is corrupt or was edited"):
        load()
