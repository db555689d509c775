"""Chapter 12's exercise checks: silent on an untouched stub, right answers pass, each wrong one is named."""

import pytest
import torch

from shared.checks import check_exercise_12_1, check_exercise_12_2, check_exercise_12_3

RIGHT_12_2 = 2 * 28 * 8 * 128 * 2 * 32_768
RIGHT_12_3 = 30_532_122_624 - 48 * 120 * 3 * 2048 * 768


def test_untouched_stubs_say_so_and_pass(capsys):
    check_exercise_12_1(lambda x, weight, eps=1e-6: None)
    check_exercise_12_2(None)
    check_exercise_12_3(None)
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_exercise_12_1_accepts_rmsnorm_and_names_layernorm_and_a_missing_gain(capsys):
    def right(x, weight, eps=1e-6):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    check_exercise_12_1(right)
    assert "Exercise 12.1: correct!" in capsys.readouterr().out

    def layer_norm(x, weight, eps=1e-6):
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps) * weight

    with pytest.raises(AssertionError, match="subtracts the mean"):
        check_exercise_12_1(layer_norm)
    with pytest.raises(AssertionError, match="multiply by the gain"):
        check_exercise_12_1(lambda x, weight, eps=1e-6: right(x, weight, eps) / weight)
    with pytest.raises(AssertionError, match="differs from RMSNorm"):
        check_exercise_12_1(lambda x, weight, eps=1e-6: x / x.pow(2).mean(-1, keepdim=True).sqrt() * weight * 1.01)


@pytest.mark.parametrize("answer, message", [
    (RIGHT_12_2 * 3, "only the n_kv_groups = 8"),
    (RIGHT_12_2 // 2, "keys AND values"),
    (RIGHT_12_2 * 2, "2 bytes per number"),
    (RIGHT_12_2 + 1, "expected 3,758,096,384"),
    (3.5, "whole number"),
])
def test_exercise_12_2_names_each_mistake(answer, message):
    with pytest.raises(AssertionError, match=message):
        check_exercise_12_2(answer)


def test_exercise_12_2_and_12_3_accept_the_right_counts(capsys):
    check_exercise_12_2(RIGHT_12_2)
    check_exercise_12_3(RIGHT_12_3)
    out = capsys.readouterr().out
    assert "Exercise 12.2: correct!" in out and "Exercise 12.3: correct!" in out


@pytest.mark.parametrize("answer, message", [
    (30_532_122_624, "every parameter"),
    (RIGHT_12_3 - 151_936 * 2048, "the embedding counts"),
    (RIGHT_12_3 - 48 * 8 * 3 * 2048 * 768, "8 chosen experts"),
    (RIGHT_12_3 + 7, "expected 3,353,032,704"),
])
def test_exercise_12_3_names_each_mistake(answer, message):
    with pytest.raises(AssertionError, match=message):
        check_exercise_12_3(answer)
