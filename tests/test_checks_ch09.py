"""Chapter 9's exercise checks accept a right answer, reject wrong ones with a useful message, and wait for None."""

import numpy as np
import pytest

from shared.checks import check_exercise_9_1, check_exercise_9_2, check_exercise_9_3, check_exercise_9_4
from shared.token_file import write_token_file
from shared.tokenization import get_gpt2_tokenizer


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    documents = ["One short document.", "A longer document, with quite a few more words in it than the first.", "Mid."]
    return write_token_file(tmp_path_factory.mktemp("ch09") / "t.bin", documents, get_gpt2_tokenizer())


def test_untouched_exercises_are_not_attempted(capsys, token_file):
    check_exercise_9_1(None)
    check_exercise_9_2(None)
    check_exercise_9_3(None, None)
    check_exercise_9_4(None, None, token_file)
    out = capsys.readouterr().out
    assert [f"Exercise 9.{n}: not attempted yet" in out for n in range(1, 5)] == [True] * 4


def shouting(text):
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) > len(letters) / 2


def test_9_1_accepts_the_rule(capsys):
    check_exercise_9_1(shouting)
    assert "Exercise 9.1: correct!" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [
    (lambda text: sum(c.isupper() for c in text) > len(text) / 2, "count the capitals among the letters"),
    (lambda text: any(c.isupper() for c in text), "count the capitals among the letters"),
    (lambda text: sum(w.isupper() for w in text.split()) >= 1, "count the capitals among the letters"),
])
def test_9_1_rejects_wrong_rules(wrong, message):
    with pytest.raises((AssertionError, ZeroDivisionError), match=message):
        check_exercise_9_1(wrong)


def test_9_1_rejects_a_rule_that_flags_genuine_passages():
    with pytest.raises(AssertionError, match="genuine passages of Emma"):
        check_exercise_9_1(lambda text: shouting(text) or "Emma" in text)


def test_9_2(capsys):
    check_exercise_9_2(3 / 7)
    assert "Exercise 9.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="divide.*by the union"):
        check_exercise_9_2(3 / 5)
    with pytest.raises(AssertionError, match="is not it"):
        check_exercise_9_2(0.5)


def test_9_3(capsys):
    check_exercise_9_3(20, 6)
    assert "Exercise 9.3: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="the signature has 120"):
        check_exercise_9_3(16, 8)
    with pytest.raises(AssertionError, match="use more bands"):
        check_exercise_9_3(15, 8)
    with pytest.raises(AssertionError, match="use longer bands"):
        check_exercise_9_3(24, 5)


def test_9_4(capsys, token_file):
    tokenizer = get_gpt2_tokenizer()
    longest = len(tokenizer.encode("A longer document, with quite a few more words in it than the first."))
    check_exercise_9_4(3, longest, token_file)
    assert "Exercise 9.4: correct!" in capsys.readouterr().out
    assert int(np.sum(token_file.tokens == token_file.eot_id)) == 3
    with pytest.raises(AssertionError, match="the file has 3 <\\|endoftext\\|> ids"):
        check_exercise_9_4(2, longest, token_file)
    with pytest.raises(AssertionError, match="counts the <\\|endoftext\\|> after the document too"):
        check_exercise_9_4(3, longest + 1, token_file)
    with pytest.raises(AssertionError, match="is not .* tokens long"):
        check_exercise_9_4(3, longest - 2, token_file)
