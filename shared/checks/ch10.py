"""Checks for chapter 10's exercises (evaluation): bits per byte, acc and acc_norm, short choices, the MMLU prompt."""

from __future__ import annotations

import math

from shared.checks.common import correct, not_attempted
from shared.evaluation import score_multiple_choice
from shared.multiple_choice import MultipleChoiceItem, format_mmlu_prompt, load_austen_multiple_choice
from shared.pretrained import load_austen_gpt

# The shipped model's held-out score (shared/data/models/README.md): summed loss and sizes of Persuasion.
EXERCISE_10_1_TOKENS, EXERCISE_10_1_BYTES, EXERCISE_10_1_PERPLEXITY = 131_130, 466_854, 66.5
EXERCISE_10_2_LOGPROBS = [-12.0, -20.5, -14.0]  # summed log-probabilities of three choices
EXERCISE_10_2_CHOICES = [" She smiled at him.", " Anne could not answer him at all.", " He had gone out."]
EXERCISE_10_3_ITEMS = 40  # the first 40 held-out items of the Austen set


def check_exercise_10_1(bits_per_byte) -> None:
    """Exercise 10.1: perplexity 66.5 over 131,130 tokens of a 466,854-byte text, in bits per byte."""
    if not_attempted("10.1", bits_per_byte):
        return
    nats = math.log(EXERCISE_10_1_PERPLEXITY) * EXERCISE_10_1_TOKENS  # loss per token x tokens: the total loss
    expected = nats / EXERCISE_10_1_BYTES / math.log(2)
    assert isinstance(bits_per_byte, int | float), f"give a number, got {type(bits_per_byte).__name__}"
    assert abs(bits_per_byte - math.log2(EXERCISE_10_1_PERPLEXITY)) > 0.01, (
        "that is bits per token (log2 of the perplexity): spread the total loss over the bytes instead"
    )
    assert abs(bits_per_byte - expected) < 0.005, (
        f"{bits_per_byte:.4f} is not right: the total loss is ln(perplexity) x tokens nats; divide it by the bytes "
        "and by ln 2 (nats to bits)"
    )
    correct("10.1", f"{expected:.3f} bits per byte, as the model's README reports.")


def check_exercise_10_2(prediction, prediction_norm) -> None:
    """Exercise 10.2: which of EXERCISE_10_2_CHOICES `acc` and `acc_norm` pick (indices 0-2)."""
    if not_attempted("10.2", prediction, prediction_norm):
        return
    per_char = [lp / len(c) for lp, c in zip(EXERCISE_10_2_LOGPROBS, EXERCISE_10_2_CHOICES, strict=True)]
    expected = max(range(3), key=EXERCISE_10_2_LOGPROBS.__getitem__)
    expected_norm = max(range(3), key=per_char.__getitem__)
    assert prediction == expected, (
        f"acc picks the choice with the highest summed log-probability (the least negative): not {prediction!r}"
    )
    assert prediction_norm == expected_norm, (
        f"acc_norm divides each log-probability by the choice's length in characters (the leading space counts) "
        f"and picks the highest: not {prediction_norm!r}"
    )
    correct("10.2", "per character: " + ", ".join(f"{s:.3f}" for s in per_char) + ".")


def _exercise_10_3_short_wins() -> tuple[float, float]:
    """How often a half-sentence beats the whole true sentence, summed and per character."""
    model, tokenizer = load_austen_gpt()
    held_out = [i for i in load_austen_multiple_choice() if i.split == "heldout"][:EXERCISE_10_3_ITEMS]
    items = []
    for item in held_out:
        words = item.choices[item.label].split()
        items.append(MultipleChoiceItem(item.context, (item.choices[item.label],
                                                       " " + " ".join(words[: len(words) // 2])), label=0))
    scores = score_multiple_choice(model, tokenizer, items)
    return (sum(p == 1 for p in scores.predictions) / len(items),
            sum(p == 1 for p in scores.predictions_norm) / len(items))


def check_exercise_10_3(short_wins_sum, short_wins_norm) -> None:
    """Exercise 10.3: the fractions of items in which the half sentence wins, by summed and by normalised score."""
    if not_attempted("10.3", short_wins_sum, short_wins_norm):
        return
    expected_sum, expected_norm = _exercise_10_3_short_wins()
    assert abs(short_wins_sum - expected_sum) < 0.03, (
        f"summed scores: the half sentence wins {expected_sum:.0%} of the time, not {short_wins_sum:.0%}. Build each "
        "item as (the true choice, ' ' + its first len(words) // 2 words) with label 0, and count predictions == 1"
    )
    assert abs(short_wins_norm - expected_norm) < 0.03, (
        f"normalised scores: the half sentence wins {expected_norm:.0%} of the time, not {short_wins_norm:.0%}: use "
        "predictions_norm"
    )
    correct("10.3", f"the half sentence wins {expected_sum:.0%} by summed log-probability, {expected_norm:.0%} per "
             "character.")


def check_exercise_10_4(prompt) -> None:
    """Exercise 10.4: the MMLU prompt for one question (see the notebook for the exact question)."""
    if not_attempted("10.4", prompt):
        return
    expected = format_mmlu_prompt("In which town does Anne Elliot meet Captain Wentworth again?",
                                  ["Bath", "Lyme", "Uppercross", "London"], subject="Persuasion")
    assert isinstance(prompt, str), f"the prompt is a string, got {type(prompt).__name__}"
    assert prompt.endswith("\nAnswer:"), "the prompt ends with a line 'Answer:' (no space after the colon)"
    for line in expected.split("\n"):
        assert line in prompt.split("\n"), f"the line {line!r} is missing (or differs)"
    assert prompt == expected, f"close, but not exactly the format; expected:\n{expected}"
    correct("10.4")
