"""Chapter 10's exercise checks accept a right answer, reject wrong ones with a useful message, and treat None
as not attempted."""

import math

import pytest

import shared.checks.ch10 as checks
from shared.checks import check_exercise_10_1, check_exercise_10_2, check_exercise_10_3, check_exercise_10_4
from shared.multiple_choice import format_mmlu_prompt


@pytest.mark.parametrize("call", [
    lambda: check_exercise_10_1(None),
    lambda: check_exercise_10_2(None, None),
    lambda: check_exercise_10_3(None, None),
    lambda: check_exercise_10_4(None),
])
def test_an_untouched_exercise_is_not_attempted(call, capsys):
    call()
    assert "not attempted yet" in capsys.readouterr().out


def test_10_1_accepts_bits_per_byte_and_rejects_bits_per_token(capsys):
    check_exercise_10_1(math.log(66.5) * 131_130 / 466_854 / math.log(2))
    assert "Exercise 10.1: correct! 1.701" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="that is bits per token"):
        check_exercise_10_1(math.log2(66.5))
    with pytest.raises(AssertionError, match="divide it by the bytes"):
        check_exercise_10_1(math.log(66.5) * 131_130 / 466_854)  # nats, not bits


def test_10_2_accepts_the_two_picks_and_rejects_others(capsys):
    check_exercise_10_2(0, 1)
    assert "Exercise 10.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="highest summed log-probability"):
        check_exercise_10_2(1, 1)  # the longest choice
    with pytest.raises(AssertionError, match="length in characters"):
        check_exercise_10_2(0, 0)  # normalised the same as summed


def test_10_3_accepts_the_measured_fractions_and_rejects_swapped_ones(capsys, monkeypatch):
    # The measurement itself runs the shipped model (the solutions notebook does it); here a fixed result.
    monkeypatch.setattr(checks, "_exercise_10_3_short_wins", lambda: (1.0, 0.675))
    check_exercise_10_3(1.0, 0.675)
    assert "Exercise 10.3: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="summed scores: the half sentence wins 100%"):
        check_exercise_10_3(0.675, 1.0)
    with pytest.raises(AssertionError, match="use predictions_norm"):
        check_exercise_10_3(1.0, 0.0)


def test_10_3_measurement_favours_the_short_choice_when_summed():
    short_wins_sum, short_wins_norm = checks._exercise_10_3_short_wins()
    assert short_wins_sum > 0.9  # a prefix always has fewer tokens to pay for
    assert short_wins_norm < short_wins_sum  # normalising removes some of that advantage


QUESTION = "In which town does Anne Elliot meet Captain Wentworth again?"
OPTIONS = ["Bath", "Lyme", "Uppercross", "London"]


def test_10_4_accepts_the_mmlu_prompt_and_names_a_missing_line(capsys):
    check_exercise_10_4(format_mmlu_prompt(QUESTION, OPTIONS, subject="Persuasion"))
    assert "Exercise 10.4: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="'B. Lyme' is missing"):
        check_exercise_10_4(format_mmlu_prompt(QUESTION, OPTIONS, subject="Persuasion").replace("B. Lyme", "B) Lyme"))
    with pytest.raises(AssertionError, match="ends with a line 'Answer:'"):
        check_exercise_10_4(format_mmlu_prompt(QUESTION, OPTIONS, subject="Persuasion") + " ")
    with pytest.raises(AssertionError, match="about Persuasion"):
        check_exercise_10_4(format_mmlu_prompt(QUESTION, OPTIONS))  # no subject header
