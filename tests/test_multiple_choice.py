"""`shared/multiple_choice.py` and the multiple-choice scoring in `shared/evaluation.py`.

Scoring is held to log-probabilities worked out by hand on a model whose logits are a fixed table; a
model that knows every answer scores 100%, and a random one scores near chance on many items.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

import pytest
import torch

from shared.evaluation import continuation_logprobs, loss_over_token_ids, score_multiple_choice
from shared.multiple_choice import (
    AUSTEN_MC_PATH,
    AUSTEN_MC_SHA256,
    MultipleChoiceItem,
    build_austen_multiple_choice,
    format_mmlu_prompt,
    load_austen_multiple_choice,
    mmlu_item,
    read_hellaswag_jsonl,
    split_sentences,
    write_hellaswag_jsonl,
)
from shared.transformer import GPTModel


class CharTokenizer:
    """One token per character of a fixed alphabet."""

    def __init__(self, alphabet: str):
        self.alphabet = alphabet

    def encode(self, text: str) -> list[int]:
        return [self.alphabet.index(ch) for ch in text]


class TableModel(torch.nn.Module):
    """Logits that depend only on the current token: row `id` of a fixed table."""

    def __init__(self, table: list[list[float]], context_length: int = 16):
        super().__init__()
        self.table = torch.tensor(table)
        self.cfg = {"context_length": context_length}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx]


# After "a": p = (1/4, 1/2, 1/4); after "b": (3/5, 1/5, 1/5); after "c": uniform.
TABLE = [[0.0, math.log(2), 0.0], [math.log(3), 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_scores_match_a_hand_computed_example() -> None:
    item = MultipleChoiceItem("a", ("b", "ba", "c"), label=1)
    scores = score_multiple_choice(TableModel(TABLE), CharTokenizer("abc"), [item], batch_size=2)
    expected = [math.log(1 / 2), math.log(1 / 2) + math.log(3 / 5), math.log(1 / 4)]
    assert scores.logprobs[0] == pytest.approx(expected)
    assert scores.num_chars == [[1, 2, 1]]
    # summed: "b" (-0.69) beats "ba" (-1.20); per character "ba" (-0.60) beats "b" (-0.69)
    assert scores.predictions == [0] and scores.accuracy == 0.0
    assert scores.predictions_norm == [1] and scores.accuracy_norm == 1.0


class LookupModel(torch.nn.Module):
    """Knows the answers: after any prefix of a right context + answer it puts nearly all its
    probability on the true next token; after anything else it is uniform."""

    def __init__(self, sequences: list[list[int]], vocab_size: int, context_length: int = 64):
        super().__init__()
        self.next_token = {tuple(seq[: t + 1]): seq[t + 1] for seq in sequences for t in range(len(seq) - 1)}
        self.vocab_size = vocab_size
        self.cfg = {"context_length": context_length}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*idx.shape, self.vocab_size)
        for row in range(idx.shape[0]):
            for t in range(idx.shape[1]):
                nxt = self.next_token.get(tuple(idx[row, : t + 1].tolist()))
                if nxt is not None:
                    logits[row, t, nxt] = 20.0
        return logits


def random_items(count: int, seed: int, alphabet: str = "abcdefgh") -> list[MultipleChoiceItem]:
    """Random strings as contexts and choices (choices of different lengths), the label drawn at random."""
    rng = random.Random(seed)

    def word(low: int, high: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))

    return [MultipleChoiceItem(word(3, 8), tuple(word(1, 6) for _ in range(4)), rng.randrange(4))
            for _ in range(count)]


def test_a_model_that_knows_the_answers_scores_100_percent() -> None:
    tokenizer = CharTokenizer("abcdefgh")
    items = random_items(40, seed=1)
    known = [tokenizer.encode(i.context + i.choices[i.label]) for i in items]
    scores = score_multiple_choice(LookupModel(known, 8), tokenizer, items, batch_size=7)
    assert scores.accuracy == 1.0 and scores.accuracy_norm == 1.0
    assert scores.predictions == [i.label for i in items]


def test_a_random_model_scores_near_chance() -> None:
    torch.manual_seed(123)
    model = GPTModel({"vocab_size": 8, "context_length": 32, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
                      "drop_rate": 0.0, "qkv_bias": False})
    items = random_items(600, seed=2)
    scores = score_multiple_choice(model, CharTokenizer("abcdefgh"), items, batch_size=256)
    # Binomial(600, 1/4): mean 150, standard deviation 10.6; allow 4 standard deviations either way.
    bound = 4 * math.sqrt(600 * 0.25 * 0.75) / 600
    assert abs(scores.accuracy - 0.25) < bound
    assert abs(scores.accuracy_norm - 0.25) < bound


def small_gpt(context_length: int = 12) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel({"vocab_size": 11, "context_length": context_length, "emb_dim": 16, "n_heads": 2,
                     "n_layers": 2, "drop_rate": 0.0, "qkv_bias": True}).eval()


def test_continuation_logprobs_equal_the_difference_of_summed_losses_and_ignore_batching() -> None:
    model = small_gpt()
    rng = random.Random(3)
    requests = [([rng.randrange(11) for _ in range(rng.randint(1, 6))], [rng.randrange(11) for _ in range(k)])
                for k in (1, 2, 3, 5, 4, 1)]
    one_by_one = continuation_logprobs(model, requests, "cpu", batch_size=1)
    batched = continuation_logprobs(model, requests, "cpu", batch_size=4)
    assert batched == pytest.approx(one_by_one, abs=1e-5)  # right-padding changes nothing
    for (context, continuation), score in zip(requests, one_by_one, strict=True):
        # log p(continuation | context) = -(NLL of context + continuation) + NLL of context
        full_nll = loss_over_token_ids(model, context + continuation, "cpu")[0]
        context_nll = loss_over_token_ids(model, context, "cpu")[0] if len(context) > 1 else 0.0
        assert score == pytest.approx(context_nll - full_nll, abs=1e-5)


def test_a_context_longer_than_the_window_is_cut_from_the_left() -> None:
    model = small_gpt(context_length=12)
    context, continuation = [i % 11 for i in range(30)], [3, 1, 4]
    (long_score,) = continuation_logprobs(model, [(context, continuation)], "cpu")
    # the model reads the last 12 tokens of context + continuation[:-1]: the context's last 10
    (cut_score,) = continuation_logprobs(model, [(context[-10:], continuation)], "cpu")
    assert long_score == cut_score
    (less_context,) = continuation_logprobs(model, [(context[-10:], continuation)], "cpu", context_length=8)
    assert less_context != pytest.approx(long_score, abs=1e-4)  # the window really is what changes the score


def test_mmlu_prompt_and_letter_choices() -> None:
    prompt = format_mmlu_prompt("Who wrote Emma?", ["Austen", "Dickens"], subject="literature")
    assert prompt == ("The following are multiple choice questions (with answers) about literature.\n\n"
                      "Who wrote Emma?\nA. Austen\nB. Dickens\nAnswer:")
    item = mmlu_item("Who wrote Emma?", ["Austen", "Dickens", "Eliot"], label=0)
    assert item.context.endswith("C. Eliot\nAnswer:") and item.choices == (" A", " B", " C")


HELLASWAG_SAMPLE = [  # written for this test in the format of HellaSwag's validation file
    {"ind": 24, "activity_label": "Baking cookies", "ctx_a": "A woman pours flour into a bowl.", "ctx_b": "she",
     "ctx": "A woman pours flour into a bowl. she", "split": "val", "split_type": "indomain", "label": 2,
     "endings": ["drives the bowl to work.", "paints the flour blue.", "adds two eggs and stirs.",
                 "throws the bowl at the camera."], "source_id": "activitynet~v_test1"},
    {"ind": 99, "activity_label": "Home and Garden", "ctx_a": "[header] How to water a fern [title] Check the soil.",
     "ctx_b": "", "ctx": "[header] How to water a fern [title] Check the soil.", "split": "val",
     "split_type": "zeroshot", "label": 0,
     "endings": ["[step] Water it when the top inch feels dry.", "[step] Bake it.", "[step] Sing.", "[step] Fold it."],
     "source_id": "wikihow~3"},
]


def test_the_hellaswag_reader_parses_the_sample(tmp_path) -> None:
    path = tmp_path / "sample.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in HELLASWAG_SAMPLE) + "\n\n", encoding="utf-8")
    first, second = read_hellaswag_jsonl(path)
    assert first.context == "Baking cookies: A woman pours flour into a bowl. she"
    assert first.choices[2] == " adds two eggs and stirs." and first.label == 2 and first.split == "indomain"
    assert second.context == "Home and Garden: How to water a fern. Check the soil."
    assert second.choices[0] == " Water it when the top inch feels dry." and second.split == "zeroshot"


def test_the_hellaswag_reader_names_bad_lines(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    record = dict(HELLASWAG_SAMPLE[0], label=4)
    path.write_text(json.dumps(HELLASWAG_SAMPLE[0]) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: label 4 is not the index of a choice.*from 0 to 3"):
        read_hellaswag_jsonl(path)
    path.write_text(json.dumps(dict(HELLASWAG_SAMPLE[0], endings=[])) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: 'endings' must be a non-empty list"):
        read_hellaswag_jsonl(path)
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        read_hellaswag_jsonl(path)
    path.write_text(json.dumps({"ctx": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no endings, label"):
        read_hellaswag_jsonl(path)


def test_bad_items_and_requests_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 choices"):
        MultipleChoiceItem("context", (), 0)
    with pytest.raises(ValueError, match="at least 2 choices"):
        MultipleChoiceItem("context", "abc", 0)
    with pytest.raises(ValueError, match="label 3 is not the index of a choice"):
        MultipleChoiceItem("context", ("a", "b", "c"), 3)
    with pytest.raises(ValueError, match="the context is empty"):
        MultipleChoiceItem("", ("a", "b"), 0)
    with pytest.raises(ValueError, match="non-empty string"):
        MultipleChoiceItem("context", ("a", ""), 0)
    model = small_gpt()
    with pytest.raises(ValueError, match="request 0 has an empty context"):
        continuation_logprobs(model, [([], [1])], "cpu")
    with pytest.raises(ValueError, match="request 1 has an empty continuation"):
        continuation_logprobs(model, [([1], [2]), ([1], [])], "cpu")
    with pytest.raises(ValueError, match="13 tokens, more than the model's window of 12"):
        continuation_logprobs(model, [([1], [2] * 13)], "cpu")
    with pytest.raises(ValueError, match="no items to score"):
        score_multiple_choice(model, CharTokenizer("abc"), [])


def test_the_austen_set_is_regenerated_byte_for_byte(tmp_path) -> None:
    path = tmp_path / "austen-mc.jsonl"
    write_hellaswag_jsonl(build_austen_multiple_choice(seed=123), path)
    assert path.read_bytes() == AUSTEN_MC_PATH.read_bytes()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == AUSTEN_MC_SHA256


def test_the_austen_set_is_balanced_and_its_distractors_match_in_length() -> None:
    items = load_austen_multiple_choice()
    assert len(items) == 400
    assert sum(i.split == "heldout" for i in items) == 150 and {i.source for i in items if i.split == "heldout"} == {
        "persuasion"}
    counts = [sum(i.label == k for i in items) for k in range(4)]
    assert min(counts) > 70  # the right answer is not always in one place
    for item in items:
        answer = len(item.choices[item.label])
        assert all(abs(len(c) - answer) <= 0.1 * answer + 1 for c in item.choices)  # +1: the leading space
        assert len(set(item.choices)) == 4


def test_sentences_are_not_cut_after_titles() -> None:
    assert split_sentences('Mr. Darcy bowed. "Indeed!" said Mrs. Bennet. St. James was far.') == [
        "Mr. Darcy bowed.", '"Indeed!" said Mrs. Bennet.', "St. James was far."]
