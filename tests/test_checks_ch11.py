"""Chapter 11's exercise checks accept the solution, reject wrong answers with a useful message, and
treat an untouched exercise as not attempted."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from shared.checks import check_exercise_11_1, check_exercise_11_2, check_exercise_11_3

CSV_PATH = Path(__file__).resolve().parent.parent / "chapters" / "ch11_scaling_laws" / "scaling_results.csv"
BUDGET = 1e21


def largest_model_runs():
    with open(CSV_PATH, newline="") as f:
        rows = list(csv.DictReader(f))
    largest = max(int(r["non_embedding_parameters"]) for r in rows)
    rows = [r for r in rows if int(r["non_embedding_parameters"]) == largest]
    return (np.array([float(r["tokens"]) for r in rows]), np.array([float(r["steps"]) for r in rows]),
            np.array([float(r["val_loss"]) for r in rows]))


def test_untouched_exercises_are_not_attempted(capsys):
    check_exercise_11_1(None, None)
    check_exercise_11_2(None, None, BUDGET)
    check_exercise_11_3(None)
    out = capsys.readouterr().out
    assert out.count("not attempted yet") == 3 and "correct" not in out


def test_11_1_accepts_a_log_space_fit(capsys):
    tokens, _, losses = largest_model_runs()
    slope, intercept = np.polyfit(np.log(tokens), np.log(losses), 1)
    check_exercise_11_1(-slope, np.exp(intercept / -slope))
    assert "Exercise 11.1: correct!" in capsys.readouterr().out


def test_11_1_rejects_wrong_fits():
    tokens, steps, losses = largest_model_runs()
    slope, intercept = np.polyfit(np.log(tokens), np.log(losses), 1)
    with pytest.raises(AssertionError, match="alpha_D is minus that slope"):
        check_exercise_11_1(slope, np.exp(intercept / -slope))  # the sign
    with pytest.raises(AssertionError, match="D_c = exp"):
        check_exercise_11_1(-slope, np.exp(intercept))  # intercept taken as log D_c
    step_slope, step_intercept = np.polyfit(np.log(steps), np.log(losses), 1)
    with pytest.raises(AssertionError, match="D counts tokens"):
        check_exercise_11_1(-step_slope, np.exp(step_intercept / -step_slope))
    with pytest.raises(AssertionError, match="fit np.log\\(val_loss\\) against np.log\\(tokens\\)"):
        check_exercise_11_1(0.0176, 5.74e47)  # the chapter's L(N) at the largest budget, not L(D)


def test_11_2_accepts_the_compute_optimal_split(capsys):
    parameters = math.sqrt(BUDGET / 120)
    check_exercise_11_2(parameters, 20 * parameters, BUDGET)
    assert "Exercise 11.2: correct!" in capsys.readouterr().out


@pytest.mark.parametrize("parameters, tokens, message", [
    (math.sqrt(BUDGET / 20), 20 * math.sqrt(BUDGET / 20), "6 FLOPs per parameter"),  # forgot the 6
    (math.sqrt(BUDGET / 6), math.sqrt(BUDGET / 6), "tokens per parameter"),  # right compute, 1 token/parameter
    (-1.0, 1.0, "positive numbers"),
])
def test_11_2_rejects_wrong_splits(parameters, tokens, message):
    with pytest.raises(AssertionError, match=message):
        check_exercise_11_2(parameters, tokens, BUDGET)


def test_11_3_accepts_the_factor_and_rejects_its_inverse(capsys):
    check_exercise_11_3((1 / 0.9) ** (1 / 0.076))
    assert "Exercise 11.3: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="more than 1"):
        check_exercise_11_3(0.9 ** (1 / 0.076))
    with pytest.raises(AssertionError, match=r"k = \(1 / 0.9\)"):
        check_exercise_11_3(1 / 0.9)  # as if alpha were 1
