"""Chapter 6's classification finetuning: the data, the head, the loss and accuracy, training, and the download.

Models here are tiny random GPTs; the download is served by a fake `urlopen` from a zip the test writes.
"""

import io
import urllib.error
import urllib.request
import zipfile

import pandas as pd
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from shared.classification import (
    ClassificationDataset,
    add_classification_head,
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    classify_text,
    create_balanced_dataset,
    download_and_unzip_spam_data,
    load_spam_data,
    novel_passages,
    random_split,
    train_classifier_simple,
)
from shared.corpus import load_novel
from shared.tokenization import BPETokenizer, get_gpt2_tokenizer
from shared.transformer import GPTModel

TINY = {"vocab_size": 300, "context_length": 32, "emb_dim": 32, "n_heads": 2, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": False}


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    """A small byte-level BPE (300 ids) with <|endoftext|>, like the shipped model's but quick to learn."""
    return BPETokenizer.train(load_novel("emma")[:20_000], 300, special_tokens=["<|endoftext|>"])


def tiny_gpt(seed: int = 0, **overrides) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel({**TINY, **overrides}).eval()


# -- the dataset ------------------------------------------------------------------------------------------


def test_passages_are_whole_sentences_within_the_word_limits() -> None:
    passages = novel_passages(load_novel("prideprejudice"), min_words=20, max_words=40)
    assert len(passages) > 1000
    assert all(20 <= len(p.split()) <= 40 for p in passages)
    sentence_ends = sum(p.rstrip("\"'_)")[-1] in ".!?" for p in passages)
    assert sentence_ends > 0.97 * len(passages)  # the rest end where a paragraph ends (e.g. "said:")
    assert not any(p.startswith("Chapter") or p.startswith("CHAPTER") for p in passages)


def test_mr_and_mrs_do_not_end_a_sentence() -> None:
    text = "He saw Mr. Darcy bow. It rained. She met Mrs. Bennet there."
    expected = ["He saw Mr. Darcy bow.", "It rained. She met Mrs. Bennet there."]  # not "He saw Mr."
    assert novel_passages(text, min_words=3, max_words=9) == expected


def test_bad_word_limits_are_explained() -> None:
    with pytest.raises(ValueError, match="need 1 <= min_words <= max_words"):
        novel_passages("Some text.", min_words=10, max_words=5)


def test_balanced_dataset_has_equal_classes_and_is_seeded() -> None:
    df = pd.DataFrame({"Label": ["a"] * 10 + ["b"] * 3 + ["c"] * 5, "Text": [f"t{i}" for i in range(18)]})
    balanced = create_balanced_dataset(df)
    assert balanced["Label"].value_counts().to_dict() == {"a": 3, "b": 3, "c": 3}
    assert balanced.equals(create_balanced_dataset(df))
    assert not create_balanced_dataset(df, seed=1).equals(balanced)  # another seed draws other rows of "a"
    with pytest.raises(ValueError, match="class 'b' has only 3 rows: ask for at most 3"):
        create_balanced_dataset(df, per_class=4)


def test_random_split_is_a_seeded_partition() -> None:
    df = pd.DataFrame({"Label": [0, 1] * 50, "Text": [f"text {i}" for i in range(100)]})
    train, validation, test = random_split(df, 0.7, 0.1)
    assert (len(train), len(validation), len(test)) == (70, 10, 20)
    assert sorted([*train["Text"], *validation["Text"], *test["Text"]]) == sorted(df["Text"])
    assert list(train["Text"]) != list(df["Text"][:70])  # shuffled
    assert list(random_split(df, 0.7, 0.1)[2]["Text"]) == list(test["Text"])
    with pytest.raises(ValueError, match="leave some rows for the test set"):
        random_split(df, 0.8, 0.2)


def test_dataset_pads_to_the_longest_text_with_endoftext(tokenizer, tmp_path) -> None:
    texts = ["Emma smiled.", "Mr. Knightley walked in from the garden, and said nothing.", "Yes."]
    path = tmp_path / "train.csv"
    pd.DataFrame({"Label": [0, 1, 0], "Text": texts}).to_csv(path, index=None)
    dataset = ClassificationDataset(path, tokenizer)
    lengths = [len(tokenizer.encode(t)) for t in texts]
    assert dataset.max_length == max(lengths)
    assert dataset.inputs.shape == (3, max(lengths))
    for row, (text, n) in enumerate(zip(texts, lengths, strict=True)):
        x, y = dataset[row]
        assert x[:n].tolist() == tokenizer.encode(text)
        assert x[n:].tolist() == [tokenizer.eot_token] * (max(lengths) - n)
        assert y.item() == [0, 1, 0][row]


def test_dataset_truncates_to_a_given_max_length_and_takes_gpt2s_pad_id() -> None:
    gpt2 = get_gpt2_tokenizer()
    df = pd.DataFrame({"Label": [1, 0], "Text": ["one two three four five six seven", "one"]})
    dataset = ClassificationDataset(df, gpt2, max_length=4)
    assert dataset.inputs.tolist() == [gpt2.encode("one two three four"), gpt2.encode("one") + [50256] * 3]


@pytest.mark.parametrize("label, message", [
    (2, "has the label 2, outside the classes 0 to 1"),
    (-1, "has the label -1, outside the classes 0 to 1"),
    ("spam", "labels must be class numbers 0, 1, 2, ...: map names to numbers first"),
    (0.5, "labels must be class numbers"),
])
def test_a_label_outside_the_classes_is_explained(tokenizer, label, message) -> None:
    df = pd.DataFrame({"Label": [0, label], "Text": ["A text.", "Another text."]})
    with pytest.raises(ValueError, match=f"row 1 of the DataFrame .*{message}"):
        ClassificationDataset(df, tokenizer, num_classes=2)


def test_missing_columns_empty_texts_and_pad_ids_are_explained(tokenizer) -> None:
    with pytest.raises(KeyError, match="no column 'Text'; its columns are \\['Label', 'text'\\]"):
        ClassificationDataset(pd.DataFrame({"Label": [0], "text": ["x"]}), tokenizer)
    with pytest.raises(ValueError, match="row 0 of the DataFrame has no text"):
        ClassificationDataset(pd.DataFrame({"Label": [0], "Text": [""]}), tokenizer)
    with pytest.raises(ValueError, match="pad_token_id=50256 is not one of the tokenizer's 300 ids"):
        ClassificationDataset(pd.DataFrame({"Label": [0], "Text": ["x"]}), tokenizer, pad_token_id=50256)
    no_eot = BPETokenizer.train("plain text without specials", 260)
    with pytest.raises(ValueError, match="no <\\|endoftext\\|> token to pad with: pass pad_token_id"):
        ClassificationDataset(pd.DataFrame({"Label": [0], "Text": ["x"]}), no_eot)


# -- the head, loss and accuracy --------------------------------------------------------------------------


def test_head_replaces_out_head_and_unfreezes_only_the_last_block_and_final_norm() -> None:
    model = add_classification_head(tiny_gpt(), num_classes=3)
    assert model.out_head.out_features == 3 and model.out_head.bias is not None
    trainable = {name.split(".")[0] + "." + name.split(".")[1] if name.startswith("trf_blocks") else name.split(".")[0]
                 for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"trf_blocks.1", "final_norm", "out_head"}
    with pytest.raises(ValueError, match="at least 2 classes"):
        add_classification_head(tiny_gpt(), num_classes=1)


def test_more_trainable_blocks_unfreeze_the_top_blocks_and_never_the_embeddings() -> None:
    model = add_classification_head(tiny_gpt(), num_classes=2, trainable_blocks=2)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"tok_emb.weight", "pos_emb.weight"}
    model = add_classification_head(tiny_gpt(), num_classes=2, trainable_blocks=0)
    assert {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad} == {"final_norm", "out_head"}
    with pytest.raises(ValueError, match="trainable_blocks=3, but the model has 2 blocks: choose from 0 to 2"):
        add_classification_head(tiny_gpt(), num_classes=2, trainable_blocks=3)


def test_loss_and_accuracy_read_the_chosen_token() -> None:
    model = add_classification_head(tiny_gpt(), num_classes=2)
    inputs = torch.randint(0, TINY["vocab_size"], (6, 10))
    with torch.no_grad():
        logits = model(inputs)
    targets = logits[:, -1, :].argmax(-1)  # the labels the last token predicts
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=4)
    assert calc_accuracy_loader(loader, model, "cpu") == 1.0
    first = logits[:, 0, :].argmax(-1)
    assert calc_accuracy_loader(loader, model, "cpu", token_index=0) == pytest.approx((first == targets).float().mean())
    expected = nn.functional.cross_entropy(logits[:4, -1, :], targets[:4])
    assert torch.allclose(calc_loss_batch(inputs[:4], targets[:4], model, "cpu"), expected, atol=1e-6)
    assert calc_loss_loader(loader, model, "cpu", num_batches=1) == pytest.approx(expected.item(), abs=1e-6)


def test_a_target_beyond_the_heads_classes_is_explained() -> None:
    model = add_classification_head(tiny_gpt(), num_classes=2)
    with pytest.raises(ValueError, match="the label 5 is outside the model's 2 classes"):
        calc_loss_batch(torch.zeros(2, 4, dtype=torch.long), torch.tensor([0, 5]), model, "cpu")
    with pytest.raises(ValueError, match="the data loader has no batches"):
        calc_accuracy_loader(DataLoader(TensorDataset(torch.zeros(1, 3), torch.zeros(1)), batch_size=2,
                                        drop_last=True), model, "cpu")


def two_vocabulary_task(n: int, seed: int) -> TensorDataset:
    """Class 0 texts use token ids 0-149, class 1 texts ids 150-299: learnable from the last token's view."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    inputs = torch.randint(0, 150, (n, 12), generator=generator) + 150 * labels[:, None]
    return TensorDataset(inputs, labels)


def test_finetuning_beats_the_untrained_head_and_leaves_frozen_weights_bit_identical(capsys) -> None:
    model = add_classification_head(tiny_gpt(seed=1), num_classes=2)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    torch.manual_seed(123)
    train_loader = DataLoader(two_vocabulary_task(160, seed=1), batch_size=16, shuffle=True)
    val_loader = DataLoader(two_vocabulary_task(64, seed=2), batch_size=16)
    before = calc_accuracy_loader(val_loader, model, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    train_losses, val_losses, train_accs, val_accs, seen = train_classifier_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=3, eval_freq=5, eval_iter=4)
    after = calc_accuracy_loader(val_loader, model, "cpu")
    assert seen == 3 * 160
    assert len(train_losses) == len(val_losses) == 6 and len(train_accs) == len(val_accs) == 3
    assert after >= 0.75 and after > before + 0.2, (before, after)
    assert val_losses[-1] < val_losses[0]
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"{name} changed although frozen"
    untrained = tiny_gpt(seed=1)
    assert not torch.equal(model.trf_blocks[-1].ff.layers[0].weight, untrained.trf_blocks[-1].ff.layers[0].weight)
    assert "Validation accuracy" in capsys.readouterr().out


# -- classify_text ------------------------------------------------------------------------------------------


def test_classify_text_pads_like_the_dataset_and_names_the_class(tokenizer) -> None:
    model = add_classification_head(tiny_gpt(), num_classes=3)
    texts = ["Emma was handsome, clever, and rich.", "She smiled."]
    dataset = ClassificationDataset(pd.DataFrame({"Label": [0, 1], "Text": texts}), tokenizer)
    with torch.no_grad():
        expected = model(dataset.inputs)[:, -1, :].argmax(-1).tolist()
    names = ["first", "second", "third"]
    for text, label in zip(texts, expected, strict=True):
        assert classify_text(text, model, tokenizer, "cpu", max_length=dataset.max_length) == label
        assert classify_text(text, model, tokenizer, "cpu", dataset.max_length, class_names=names) == names[label]


def test_text_longer_than_the_context_is_explained(tokenizer) -> None:
    model = add_classification_head(tiny_gpt(), num_classes=2)
    long_text = load_novel("emma")[:2000]
    with pytest.raises(ValueError, match=r"tokens, more than the model's context of 32: shorten it, or pass the max"):
        classify_text(long_text, model, tokenizer, "cpu")
    with pytest.raises(ValueError, match="max_length=64, but the model reads at most 32 tokens"):
        classify_text("Short.", model, tokenizer, "cpu", max_length=64)
    assert classify_text(long_text, model, tokenizer, "cpu", max_length=32) in (0, 1)  # truncated, as in training
    with pytest.raises(ValueError, match="the text is empty"):
        classify_text("", model, tokenizer, "cpu")


# -- the SMS Spam Collection, downloaded from a fake server -------------------------------------------------

URL = "https://example.org/sms+spam+collection.zip"


def spam_zip(ham: int = 4827, spam: int = 747, member: str = "SMSSpamCollection") -> bytes:
    """A zip shaped like the real one: SMSSpamCollection, one "label<TAB>message" line per message."""
    lines = [f"ham\tOk lar... see you at {i}" for i in range(ham)]
    lines += [f"spam\tWIN a prize! Call {i} now" for i in range(spam)]
    lines[3] = 'ham\t"Quoted" message, with a quote that pandas\' default reader would join to the next line'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, "\n".join(lines) + "\n")
        archive.writestr("readme", "the collection's readme")
    return buffer.getvalue()


class FakeServer:
    def __init__(self, body: bytes | None) -> None:
        self.body, self.requests = body, 0

    def urlopen(self, request, timeout=None):
        self.requests += 1
        assert request.full_url == URL
        if self.body is None:
            raise urllib.error.URLError("Name or service not known")
        response = io.BytesIO(self.body)
        response.status, response.headers = 200, {"Content-Length": str(len(self.body))}
        return response


def serve(monkeypatch, body: bytes | None) -> FakeServer:
    server = FakeServer(body)
    monkeypatch.setattr(urllib.request, "urlopen", server.urlopen)
    return server


def test_download_unzips_checks_and_caches(monkeypatch, tmp_path, capsys) -> None:
    server = serve(monkeypatch, spam_zip())
    path = download_and_unzip_spam_data(URL, extracted_path=tmp_path, progress=False)
    assert path == tmp_path / "SMSSpamCollection.tsv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SMSSpamCollection.tsv", "sms_spam_collection.zip"]
    df = load_spam_data(path)
    assert len(df) == 5574 and df["Label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    assert df["Text"][3].startswith('"Quoted" message')  # quotes are characters, not delimiters
    assert download_and_unzip_spam_data(URL, extracted_path=tmp_path, progress=False) == path
    assert server.requests == 1 and "already exists" in capsys.readouterr().out


@pytest.mark.parametrize("body, sha256, reason", [
    (spam_zip(), "0" * 64, "has SHA-256 .*, not the expected 000000000000"),
    (b"<html>Service unavailable</html>", None, "is not the SMS Spam Collection: it is not a zip file"),
    (spam_zip(member="other.txt"), None, "is not the SMS Spam Collection: it has no file 'SMSSpamCollection'"),
    (spam_zip(ham=4000), None, "4000 ham and 747 spam; the SMS Spam Collection has 5,574 lines"),
])
def test_a_download_that_fails_its_check_leaves_no_file(monkeypatch, tmp_path, body, sha256, reason) -> None:
    serve(monkeypatch, body)
    with pytest.raises(ValueError, match=f"is corrupt and was deleted; run again to retry. Details: .*{reason}"):
        download_and_unzip_spam_data(URL, extracted_path=tmp_path, sha256=sha256, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_zip_saved_by_hand_that_is_not_the_collection_is_deleted(monkeypatch, tmp_path) -> None:
    server = serve(monkeypatch, spam_zip())
    (tmp_path / "sms_spam_collection.zip").write_bytes(b"<html>a login page saved by mistake</html>")
    with pytest.raises(ValueError, match="zip is not the SMS Spam Collection: it is not a zip file.*It was deleted"):
        download_and_unzip_spam_data(URL, extracted_path=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == [] and server.requests == 0
    assert download_and_unzip_spam_data(URL, extracted_path=tmp_path, progress=False).is_file()  # run again


def test_a_pinned_sha256_that_matches_is_accepted(monkeypatch, tmp_path) -> None:
    import hashlib

    body = spam_zip()
    serve(monkeypatch, body)
    path = download_and_unzip_spam_data(URL, extracted_path=tmp_path, sha256=hashlib.sha256(body).hexdigest().upper(),
                                        progress=False)
    assert path.is_file()


def test_offline_says_what_to_do_and_leaves_no_file(monkeypatch, tmp_path) -> None:
    serve(monkeypatch, None)
    with pytest.raises(ConnectionError, match="save the zip by hand as .*sms_spam_collection.zip.*needs no download"):
        download_and_unzip_spam_data(URL, extracted_path=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_cached_file_is_replaced_and_a_zip_saved_by_hand_is_used(monkeypatch, tmp_path) -> None:
    server = serve(monkeypatch, None)  # offline: only the zip saved by hand can help
    (tmp_path / "sms_spam_collection.zip").write_bytes(spam_zip())
    (tmp_path / "SMSSpamCollection.tsv").write_text("ham\thalf a file\n")
    path = download_and_unzip_spam_data(URL, extracted_path=tmp_path, progress=False)
    assert server.requests == 0
    assert len(load_spam_data(path)) == 5574


def test_load_spam_data_names_a_bad_line(tmp_path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("ham\tfine\nspma\ttypo in the label\n")
    with pytest.raises(ValueError, match="line 2 has the label 'spma'"):
        load_spam_data(path)
