"""The chapter 6 and appendix E self-checks accept the worked solutions, reject wrong answers, and pass over stubs."""

import copy

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from shared.checks import (
    check_exercise_6_1,
    check_exercise_6_2,
    check_exercise_6_3,
    check_exercise_E_1,
    check_exercise_E_2,
)
from shared.classification import ClassificationDataset, add_classification_head, calc_accuracy_loader
from shared.corpus import load_novel
from shared.lora import LinearWithLoRA, LoRALayer, replace_linear_with_lora
from shared.tokenization import BPETokenizer
from shared.transformer import GPTModel

TINY = {"vocab_size": 280, "context_length": 48, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": False}
TEXTS = ["Emma smiled.", "Mr. Knightley came in from the garden.", "Harriet cried.", "It rained all day at Hartfield."]


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.train(load_novel("emma")[:5_000], 280, special_tokens=["<|endoftext|>"])


@pytest.fixture
def classifier() -> GPTModel:
    torch.manual_seed(0)
    return add_classification_head(GPTModel(TINY).eval(), num_classes=2)


def frame() -> pd.DataFrame:
    return pd.DataFrame({"Label": [0, 1, 0, 1], "Text": TEXTS})


def test_untouched_exercises_say_so_and_pass(capsys) -> None:
    check_exercise_6_1(None, None)
    check_exercise_6_2(None, 2)
    check_exercise_6_3(None, None, None)
    check_exercise_E_1(None, None, 8)
    check_exercise_E_2(None, None)
    assert capsys.readouterr().out.count("not attempted yet") == 5


def test_exercise_6_1(tokenizer, classifier, capsys) -> None:
    check_exercise_6_1(ClassificationDataset(frame(), tokenizer, max_length=48), classifier)
    assert "Exercise 6.1: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="padded to .* tokens, but the model reads 48: pass max_length="):
        check_exercise_6_1(ClassificationDataset(frame(), tokenizer), classifier)  # padded to the longest text
    with pytest.raises(AssertionError, match="build it with ClassificationDataset"):
        check_exercise_6_1(torch.zeros(4, 48), classifier)
    long_texts = pd.DataFrame({"Label": [0, 1], "Text": [load_novel("emma")[:500], load_novel("emma")[500:1000]]})
    with pytest.raises(AssertionError, match="only 0% of the texts end in the pad token"):
        check_exercise_6_1(ClassificationDataset(long_texts, tokenizer, max_length=48), classifier)  # all truncated


def test_exercise_6_2(classifier, capsys) -> None:
    full = copy.deepcopy(classifier)
    for param in full.parameters():
        param.requires_grad = True
    check_exercise_6_2(full, 2)
    assert "Exercise 6.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="still frozen, e.g. tok_emb.weight: set requires_grad = True"):
        check_exercise_6_2(classifier, 2)  # the chapter's model: only the last block, final norm and head train
    with pytest.raises(AssertionError, match="out_head has 2 outputs; replace it with nn.Linear\\(emb_dim, 3\\)"):
        check_exercise_6_2(full, 3)


def test_exercise_6_3(tokenizer, classifier, capsys) -> None:
    dataset = ClassificationDataset(frame(), tokenizer)
    with torch.no_grad():
        dataset.targets = classifier(dataset.inputs)[:, -1, :].argmax(-1)  # labels the last token gets right
    loader = DataLoader(dataset, batch_size=2)
    first = calc_accuracy_loader(loader, classifier, "cpu", token_index=0)
    last = calc_accuracy_loader(loader, classifier, "cpu")
    check_exercise_6_3(first, classifier, loader)
    assert "Exercise 6.3: correct!" in capsys.readouterr().out
    assert first < last == 1.0  # so that the next lines test something
    with pytest.raises(AssertionError, match="that is the last token's accuracy.*pass token_index=0"):
        check_exercise_6_3(last, classifier, loader)
    with pytest.raises(AssertionError, match="a float from 0 to 1"):
        check_exercise_6_3(75, classifier, loader)


def test_exercise_E_1(classifier, capsys) -> None:
    # The solution's count: rank * (in + out) for each of the 2 * 6 block layers and the 16 -> 2 head.
    per_block = 4 * 8 * (16 + 16) + 8 * (16 + 64) + 8 * (64 + 16)
    check_exercise_E_1(2 * per_block + 8 * (16 + 2), classifier, rank=8)
    assert "Exercise E.1: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="each gets A \\(in_features x rank\\) and B"):
        check_exercise_E_1(2 * per_block + 8 * (16 + 2) + 2 * 6 * 16 + 2, classifier, rank=8)  # with biases
    with pytest.raises(AssertionError, match="give a whole number"):
        check_exercise_E_1(1.5, classifier, rank=8)
    replace_linear_with_lora(classifier, rank=8, alpha=8)
    with pytest.raises(AssertionError, match="pass the model without LoRA"):
        check_exercise_E_1(2 * per_block + 8 * (16 + 2), classifier, rank=8)


def test_exercise_E_2(capsys) -> None:
    torch.manual_seed(0)
    layer = LinearWithLoRA(torch.nn.Linear(6, 4), rank=2, alpha=6)
    with pytest.raises(AssertionError, match="B is still zero"):
        check_exercise_E_2(layer.linear.weight.detach(), layer)
    with torch.no_grad():
        layer.lora.B.normal_()
    lora: LoRALayer = layer.lora
    merged = layer.linear.weight + lora.alpha / lora.rank * (lora.A @ lora.B).T
    check_exercise_E_2(merged.detach(), layer)
    assert "Exercise E.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="differs from the LoRA layer.*scaled|differs from the LoRA layer"):
        check_exercise_E_2((layer.linear.weight + lora.alpha * (lora.A @ lora.B).T).detach(), layer)  # book's alpha
    with pytest.raises(AssertionError, match="nn.Linear's shape \\(out_features, in_features\\) = \\(4, 6\\)"):
        check_exercise_E_2((lora.A @ lora.B).detach(), layer)  # (in, out): not transposed


class BookStyleDataset(torch.utils.data.Dataset):
    """The shape of the book's SpamDataset as the chapter shows it: padded id lists, tensors per item."""

    def __init__(self, texts, tokenizer, max_length, pad_token_id):
        self.max_length = max_length
        self.encoded_texts = [tokenizer.encode(t)[:max_length] for t in texts]
        self.encoded_texts = [ids + [pad_token_id] * (max_length - len(ids)) for ids in self.encoded_texts]

    def __getitem__(self, index):
        return torch.tensor(self.encoded_texts[index]), torch.tensor(0)

    def __len__(self):
        return len(self.encoded_texts)


def test_exercise_6_1_accepts_the_books_dataset_class(tokenizer, classifier, capsys) -> None:
    pad = tokenizer.eot_token
    check_exercise_6_1(BookStyleDataset(TEXTS, tokenizer, 48, pad), classifier)
    assert "Exercise 6.1: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="padded to 20 tokens, but the model reads 48"):
        check_exercise_6_1(BookStyleDataset(TEXTS, tokenizer, 20, pad), classifier)
