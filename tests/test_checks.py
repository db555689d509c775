"""The exercise self-checks accept the worked solution, reject wrong answers, and pass over stubs."""

import pytest
import torch

from shared.checks import check_exercise_2_1, check_exercise_2_2
from shared.data import create_dataloader_v1, load_novel
from shared.tokenization import get_gpt2_tokenizer


@pytest.fixture(scope="module")
def raw_text():
    return load_novel("prideprejudice")[:20_000]


def test_untouched_exercises_say_so_and_pass(capsys):
    check_exercise_2_1(None, None)
    check_exercise_2_2(None, None)
    out = capsys.readouterr().out
    assert out.count("not attempted yet") == 2


def test_exercise_2_1(capsys):
    tokenizer = get_gpt2_tokenizer()
    ids = tokenizer.encode("Akwirw ier")
    check_exercise_2_1(ids, [tokenizer.decode([i]) for i in ids])
    assert "Exercise 2.1: correct!" in capsys.readouterr().out

    with pytest.raises(AssertionError, match="GPT-2's tokenizer gives 6 ids"):
        check_exercise_2_1(tokenizer.encode("Akwirw  ier"), ["Akwirw ier"])
    with pytest.raises(AssertionError, match="one piece per id"):
        check_exercise_2_1(ids, [tokenizer.decode(ids)])
    with pytest.raises(AssertionError, match="join to"):
        check_exercise_2_1(ids, ["A", "k", "w", "i", "r", "w"])


def test_exercise_2_2(raw_text, capsys):
    good_2 = create_dataloader_v1(raw_text, batch_size=4, max_length=2, stride=2, shuffle=False)
    good_8 = create_dataloader_v1(raw_text, batch_size=4, max_length=8, stride=2, shuffle=False)
    check_exercise_2_2(good_2, good_8)
    assert "Exercise 2.2: correct!" in capsys.readouterr().out

    wrong_stride = create_dataloader_v1(raw_text, batch_size=4, max_length=8, stride=8, shuffle=False)
    with pytest.raises(AssertionError, match="row 1 should start 2 tokens after row 0"):
        check_exercise_2_2(good_2, wrong_stride)
    with pytest.raises(AssertionError, match="max_length=2"):
        check_exercise_2_2(good_8, good_8)
    torch.manual_seed(0)
    shuffled = create_dataloader_v1(raw_text, batch_size=4, max_length=8, stride=2, shuffle=True)
    with pytest.raises(AssertionError, match="shuffle=False"):
        check_exercise_2_2(good_2, shuffled)
