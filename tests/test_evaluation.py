"""`shared/evaluation.py`: perplexity held to `transformers`' loss, token weighting, windows, bits per byte.

The oracle is Hugging Face's `GPT2LMHeadModel` with small random (seeded) weights, loaded into
`GPTModel`; `exp(outputs.loss)` for the same tokens is the perplexity to match. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from transformers import GPT2Config, GPT2LMHeadModel

from shared.dataloader import GPTDatasetV1
from shared.evaluation import (
    IGNORE_INDEX,
    TextScore,
    Window,
    bits_per_byte,
    evaluate_text,
    loss_over_loader,
    loss_over_token_ids,
    perplexity,
    text_windows,
)
from shared.tokenization import get_gpt2_tokenizer
from shared.transformer import GPTModel
from shared.weights import load_weights_into_gpt

# (vocab_size, n_positions, n_embd, n_layer, n_head): odd sizes, so nothing hides behind a square matrix
CONFIGS = {"odd": (97, 17, 48, 2, 3), "bytes": (256, 32, 64, 3, 4)}
RTOL = 1e-5


@functools.cache
def hf_model(name: str) -> GPT2LMHeadModel:
    """A seeded random GPT-2, every parameter perturbed so that no layer norm or bias sits at its default."""
    vocab, positions, embd, layers, heads = CONFIGS[name]
    config = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=embd, n_layer=layers, n_head=heads,
                        bos_token_id=None, eos_token_id=None)
    torch.manual_seed(sum(CONFIGS[name]))
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name_, param in model.named_parameters():
            base = 1.0 if ".ln_" in name_ and name_.endswith("weight") else 0.0
            param.copy_(base + 0.3 * torch.randn_like(param))
    return model


def ours(name: str, drop_rate: float = 0.0) -> GPTModel:
    c = hf_model(name).config
    gpt = GPTModel({"vocab_size": c.vocab_size, "context_length": c.n_positions, "emb_dim": c.n_embd,
                    "n_heads": c.n_head, "n_layers": c.n_layer, "drop_rate": drop_rate, "qkv_bias": True})
    load_weights_into_gpt(gpt, hf_model(name).state_dict())
    return gpt.eval()


def random_ids(name: str, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, CONFIGS[name][0], (n,), generator=generator)


def hf_window_nll(name: str, ids: torch.Tensor, window: Window) -> float:
    """transformers' own loss for one window, times the tokens it averages over: its summed loss.

    transformers reads ids[start : end + 1] and shifts the labels itself; labels of -100 hide the
    predictions that the window keeps only as context.
    """
    chunk = ids[window.start : window.end + 1].unsqueeze(0)
    labels = chunk.clone()
    labels[0, : chunk.shape[1] - window.scored] = IGNORE_INDEX  # label 0 is never predicted anyway
    with torch.no_grad():
        return hf_model(name)(chunk, labels=labels).loss.item() * window.scored


class ByteTokenizer:
    """Each UTF-8 byte is one token (ids 0-255), so the byte count of a text is easy to check."""

    def encode(self, text: str, allowed_special=()) -> list[int]:
        return list(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Perplexity equals exp of transformers' loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_perplexity_within_one_context_equals_transformers(name: str) -> None:
    context = CONFIGS[name][1]
    ids = random_ids(name, context)  # a full context: one window, context - 1 predictions
    with torch.no_grad():
        hf_loss = hf_model(name)(ids.unsqueeze(0), labels=ids.unsqueeze(0)).loss.item()

    nll, tokens = loss_over_token_ids(ours(name), ids, "cpu")
    assert tokens == context - 1
    assert math.exp(nll / tokens) == pytest.approx(math.exp(hf_loss), rel=RTOL)

    one_batch = [(ids[:-1].unsqueeze(0), ids[1:].unsqueeze(0))]  # the same tokens, as a loader
    assert perplexity(ours(name), one_batch, "cpu") == pytest.approx(math.exp(hf_loss), rel=RTOL)


def test_non_overlapping_windows_weigh_every_token_equally() -> None:
    ids = random_ids("bytes", 28)  # 27 predictions in windows of 8: 8 + 8 + 8 + 3
    windows = text_windows(len(ids), context_length=8)
    assert windows == [Window(0, 8, 8), Window(8, 16, 8), Window(16, 24, 8), Window(24, 27, 3)]
    window_nll = [hf_window_nll("bytes", ids, w) for w in windows]
    window_tokens = [w.scored for w in windows]
    expected = sum(window_nll) / sum(window_tokens)

    # batch_size=2 runs the windows as batches of 16, 8 and 3 tokens
    nll, tokens = loss_over_token_ids(ours("bytes"), ids, "cpu", context_length=8, batch_size=2)
    assert tokens == 27
    assert nll / tokens == pytest.approx(expected, rel=RTOL)

    batch_means = [sum(window_nll[:2]) / 16, window_nll[2] / 8, window_nll[3] / 3]
    naive = sum(batch_means) / len(batch_means)  # what averaging per-batch means would report
    assert abs(naive - expected) > 100 * RTOL * expected  # so the check above tells the two apart


def test_a_short_last_batch_of_a_loader_is_weighted_by_its_tokens() -> None:
    ids = random_ids("bytes", 45, seed=1)
    dataset = GPTDatasetV1(ids.tolist(), None, max_length=8, stride=8)
    loader = DataLoader(dataset, batch_size=2, shuffle=False, drop_last=False)
    assert [len(inputs) for inputs, _ in loader] == [2, 2, 1]
    window_losses = [hf_window_nll("bytes", ids, Window(8 * i, 8 * i + 8, 8)) / 8 for i in range(5)]
    expected = sum(window_losses) / 5

    nll, tokens = loss_over_loader(ours("bytes"), loader, "cpu")
    assert tokens == 40
    assert perplexity(ours("bytes"), loader, "cpu") == pytest.approx(math.exp(expected), rel=RTOL)
    assert nll / tokens == pytest.approx(expected, rel=RTOL)

    naive = (sum(window_losses[:2]) / 2 + sum(window_losses[2:4]) / 2 + window_losses[4]) / 3
    assert abs(naive - expected) > 100 * RTOL * expected  # the book's calc_loss_loader would differ

    nll_2, tokens_2 = loss_over_loader(ours("bytes"), loader, "cpu", num_batches=2)
    assert tokens_2 == 32
    assert nll_2 / tokens_2 == pytest.approx(sum(window_losses[:4]) / 4, rel=RTOL)


def test_ignored_targets_are_not_counted() -> None:
    ids = random_ids("odd", 12)
    inputs, targets = ids[:-1].unsqueeze(0), ids[1:].unsqueeze(0).clone()
    targets[0, :4] = IGNORE_INDEX  # e.g. a masked instruction in chapter 7
    nll, tokens = loss_over_loader(ours("odd"), [(inputs, targets)], "cpu")
    assert tokens == 7
    assert nll == pytest.approx(hf_window_nll("odd", ids, Window(0, 11, 7)), rel=RTOL)


# ---------------------------------------------------------------------------------------------
# Sliding windows with a stride
# ---------------------------------------------------------------------------------------------


def test_strided_windows_score_each_token_once_and_match_transformers() -> None:
    ids = random_ids("bytes", 28, seed=2)
    windows = text_windows(len(ids), context_length=8, stride=3)
    assert windows[:3] == [Window(0, 8, 8), Window(3, 11, 3), Window(6, 14, 3)]
    expected = sum(hf_window_nll("bytes", ids, w) for w in windows) / (len(ids) - 1)

    nll, tokens = loss_over_token_ids(ours("bytes"), ids, "cpu", context_length=8, stride=3)
    assert tokens == len(ids) - 1
    assert nll / tokens == pytest.approx(expected, rel=RTOL)

    plain = loss_over_token_ids(ours("bytes"), ids, "cpu", context_length=8)
    assert loss_over_token_ids(ours("bytes"), ids, "cpu", context_length=8, stride=8) == pytest.approx(plain)
    assert nll / tokens != pytest.approx(plain[0] / plain[1], rel=1e-3)  # more context changes the predictions


@given(num_tokens=st.integers(2, 60), context_length=st.integers(1, 12), data=st.data())
def test_windows_cover_every_predicted_token_exactly_once(num_tokens: int, context_length: int, data) -> None:
    stride = data.draw(st.none() | st.integers(1, context_length))
    windows = text_windows(num_tokens, context_length, stride)
    scored = [t for w in windows for t in range(w.end - w.scored + 1, w.end + 1)]  # target positions
    assert scored == list(range(1, num_tokens))
    assert all(0 <= w.start and w.end - w.start <= context_length and 1 <= w.scored <= w.end - w.start
               for w in windows)
    if stride in (None, context_length):
        assert all(w.scored == w.end - w.start for w in windows)  # no overlap: nothing is context only


def test_the_batch_size_does_not_change_the_score() -> None:
    ids = random_ids("odd", 50, seed=3)
    scores = [loss_over_token_ids(ours("odd"), ids, "cpu", stride=5, batch_size=b) for b in (1, 3, 100)]
    assert scores[0][1] == scores[1][1] == scores[2][1] == 49
    assert scores[1][0] == pytest.approx(scores[0][0], rel=RTOL)
    assert scores[2][0] == pytest.approx(scores[0][0], rel=RTOL)


def test_evaluation_turns_dropout_off_and_restores_the_mode() -> None:
    ids = random_ids("odd", 17)
    expected = loss_over_token_ids(ours("odd"), ids, "cpu")
    dropout_model = ours("odd", drop_rate=0.5).train()
    assert loss_over_token_ids(dropout_model, ids, "cpu")[0] == pytest.approx(expected[0], rel=RTOL)
    assert dropout_model.training  # still training, as it was
    loader = [(ids[:-1].unsqueeze(0), ids[1:].unsqueeze(0))]
    assert loss_over_loader(dropout_model, loader, "cpu")[0] == pytest.approx(expected[0], rel=RTOL)
    assert dropout_model.training
    evaluated = ours("odd")
    loss_over_loader(evaluated, loader, "cpu")
    assert not evaluated.training


# ---------------------------------------------------------------------------------------------
# Texts and bits per byte
# ---------------------------------------------------------------------------------------------


def test_bits_per_byte_by_hand() -> None:
    assert bits_per_byte(12 * math.log(2), 4) == pytest.approx(3.0)  # 12 bits over 4 bytes
    score = TextScore(nll_nats=8 * math.log(2), num_tokens=4, num_bytes=2)
    assert score.loss == pytest.approx(math.log(4))  # 2 bits per token
    assert score.perplexity == pytest.approx(4.0)
    assert score.bits_per_byte == pytest.approx(4.0)  # 8 bits over 2 bytes


def test_evaluate_text_counts_every_utf8_byte() -> None:
    text = "Déjà vu — naïve café, über straße. " * 3
    assert len(text.encode("utf-8")) > len(text)  # characters are not bytes
    score = evaluate_text(ours("bytes"), text, ByteTokenizer(), "cpu", context_length=16)
    ids = torch.tensor(list(text.encode("utf-8")))
    nll, tokens = loss_over_token_ids(ours("bytes"), ids, "cpu", context_length=16)
    assert score.num_bytes == len(ids) and score.num_tokens == tokens == len(ids) - 1
    assert score.nll_nats == pytest.approx(nll, rel=RTOL)
    assert score.bits_per_byte == pytest.approx(nll / len(ids) / math.log(2), rel=RTOL)
    assert score.perplexity == pytest.approx(math.exp(nll / tokens), rel=RTOL)


def test_evaluate_text_with_gpt2_tokens_and_endoftext() -> None:
    torch.manual_seed(0)
    gpt = GPTModel({"vocab_size": 50257, "context_length": 8, "emb_dim": 8, "n_heads": 1, "n_layers": 1,
                    "drop_rate": 0.0, "qkv_bias": True})
    text = "Every effort moves you<|endoftext|>In the sunlit terraces of the palace."
    ids = get_gpt2_tokenizer().encode(text, allowed_special={"<|endoftext|>"})
    assert 50256 in ids and len(ids) > 8  # the separator is one token; the text spans several windows
    score = evaluate_text(gpt, text, get_gpt2_tokenizer(), "cpu")
    assert score.num_tokens == len(ids) - 1 and score.num_bytes == len(text)
    assert score.nll_nats == pytest.approx(loss_over_token_ids(gpt, ids, "cpu")[0], rel=RTOL)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_errors_name_the_problem() -> None:
    gpt = ours("odd")
    with pytest.raises(ValueError, match="the text is empty"):
        evaluate_text(gpt, "", ByteTokenizer(), "cpu")
    with pytest.raises(ValueError, match="the text has 1 token.*at least 2"):
        evaluate_text(gpt, "a", ByteTokenizer(), "cpu")
    with pytest.raises(ValueError, match="stride must be between 1 and context_length=8, got 9"):
        loss_over_token_ids(gpt, random_ids("odd", 20), "cpu", context_length=8, stride=9)
    with pytest.raises(ValueError, match="stride must be between 1"):
        text_windows(20, 8, stride=0)
    with pytest.raises(ValueError, match="longer than the model's context_length=17"):
        loss_over_token_ids(gpt, random_ids("odd", 40), "cpu", context_length=32)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        loss_over_token_ids(gpt, random_ids("odd", 10), "cpu", batch_size=0)
    with pytest.raises(ValueError, match="data loader has no batches"):
        perplexity(gpt, DataLoader([], batch_size=2), "cpu")
    with pytest.raises(ValueError, match="num_batches must be at least 1"):
        loss_over_loader(gpt, [(random_ids("odd", 4)[None], random_ids("odd", 4)[None])], "cpu", num_batches=0)
    with pytest.raises(ValueError, match="num_bytes must be positive"):
        bits_per_byte(1.0, 0)
    with pytest.raises(ValueError, match="cannot be negative"):
        bits_per_byte(-1.0, 10)
    with pytest.raises(ValueError, match="pass context_length= explicitly"):
        loss_over_token_ids(hf_model("odd"), random_ids("odd", 10), "cpu")
