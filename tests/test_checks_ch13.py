"""Chapter 13's exercise checks: silent on an untouched stub, right answers pass, each wrong one is named."""

import math

import pytest

from shared.checks import check_exercise_13_1, check_exercise_13_2, check_exercise_13_3
from shared.instruction import exact_match, word_f1


def ipo(pc, pr, rc, rr, beta=0.1):
    h = (pc - rc) - (pr - rr)
    return ((h - 1 / (2 * beta)) ** 2).mean()


def test_untouched_stubs_say_so_and_pass(capsys):
    check_exercise_13_1(None)
    check_exercise_13_2(None)
    check_exercise_13_3(None)
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_exercise_13_1_accepts_ipo_and_names_the_usual_slips(capsys):
    check_exercise_13_1(ipo)
    assert "Exercise 13.1: correct!" in capsys.readouterr().out
    wrong = {
        "the margin is scaled by beta": lambda pc, pr, rc, rr, beta=0.1: (
            (beta * ((pc - rc) - (pr - rr)) - 1 / (2 * beta)) ** 2).mean(),
        "square the difference": lambda pc, pr, rc, rr, beta=0.1: (
            ((pc - rc) - (pr - rr)) - 1 / (2 * beta)).abs().mean(),
        "not 1/beta": lambda pc, pr, rc, rr, beta=0.1: ((((pc - rc) - (pr - rr)) - 1 / beta) ** 2).mean(),
        "subtract the reference": lambda pc, pr, rc, rr, beta=0.1: (((pc - pr) - 1 / (2 * beta)) ** 2).mean(),
        "one number": lambda pc, pr, rc, rr, beta=0.1: ((((pc - rc) - (pr - rr)) - 1 / (2 * beta)) ** 2),
        "expected": lambda pc, pr, rc, rr, beta=0.1: ipo(pc, pr, rc, rr, beta) + 0.1,
    }
    for message, answer in wrong.items():
        with pytest.raises(AssertionError, match=message):
            check_exercise_13_1(answer)


def test_exercise_13_2_accepts_the_unbiased_estimate_and_names_the_with_replacement_one(capsys):
    check_exercise_13_2(lambda n, c, k: 1.0 - math.comb(n - c, k) / math.comb(n, k))
    assert "Exercise 13.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="drawn with replacement"):
        check_exercise_13_2(lambda n, c, k: 1 - (1 - c / n) ** k)
    with pytest.raises(AssertionError, match="return a float"):
        check_exercise_13_2(lambda n, c, k: c > 0)
    with pytest.raises(AssertionError, match=r"pass_at_k\(8, 1, 1\)"):
        check_exercise_13_2(lambda n, c, k: float(c > 0))


def test_exercise_13_3_accepts_word_f1_and_rejects_exact_match_and_unweighted_overlap(capsys):
    check_exercise_13_3(word_f1)
    assert "Exercise 13.3: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="between 0 and 1"):
        check_exercise_13_3(exact_match)
    with pytest.raises(AssertionError, match="normalize_answer"):
        check_exercise_13_3(lambda response, output: 1.0 if response == output else word_f1(response, output) * 0.9)

    def set_overlap(response, output):  # each word once: repeating a right word earns full precision
        said = set(response.lower().strip(".").split())
        right = set(output.lower().strip(".").split())
        if said == right:
            return 1.0
        common = len(said & right)
        return 0.0 if not common else 2 * common / (len(said) + len(right))

    with pytest.raises(AssertionError, match="as often as it occurs"):
        check_exercise_13_3(set_overlap)
