"""The shipped Austen GPT (`shared.pretrained`): it loads, it has learned the novels, and a bad file is refused."""

from __future__ import annotations

import shutil

import pytest
import torch

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


def test_a_state_dict_saved_the_books_way_loads_back_whole(tmp_path):
    model, _ = load_austen_gpt_sft()
    torch.save(model.state_dict(), tmp_path / "austen-gpt-sft.pth")  # chapter 7's way
    loaded, tokenizer = pretrained.load_state_dict_file(tmp_path / "austen-gpt-sft.pth")
    assert tokenizer.vocab_size == 4096 and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_a_bad_state_dict_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        pretrained.load_state_dict_file(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not be read as a saved state dict"):
        pretrained.load_state_dict_file(tmp_path / "junk.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        pretrained.load_state_dict_file(tmp_path / "list.pth")
    model, _ = load_austen_gpt()
    state = model.state_dict()
    del state["final_norm.scale"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"1 weight\(s\) missing.*final_norm.scale.*finetuned from"):
        pretrained.load_state_dict_file(tmp_path / "partial.pth")
