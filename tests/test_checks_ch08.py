"""Chapter 8's exercise checks accept a right answer and reject wrong ones with a useful message."""

import pytest

from shared.checks import check_exercise_8_1, check_exercise_8_2, check_exercise_8_3, check_exercise_8_4
from shared.memory import CheckpointedBlock, apply_activation_checkpointing
from shared.transformer import GPTModel

CFG = {"vocab_size": 200, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 4,
       "drop_rate": 0.0, "qkv_bias": False}


@pytest.mark.parametrize("check", [check_exercise_8_1, check_exercise_8_2, check_exercise_8_3, check_exercise_8_4])
def test_an_untouched_exercise_is_not_attempted(check, capsys):
    check(None)
    assert "not attempted yet" in capsys.readouterr().out


def test_8_1(capsys):
    check_exercise_8_1((4, 4, 4))
    assert "Exercise 8.1: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="ONE fp32 buffer"):
        check_exercise_8_1((4, 4, 8))  # AdamW's state, not momentum's
    with pytest.raises(AssertionError, match="4 bytes"):
        check_exercise_8_1((2, 2, 4))


def test_8_2(capsys):
    xl = 1_637_792_000
    check_exercise_8_2((2 + (2 + 12) / 8) * xl / 1e9)  # full bf16 weights, sharded gradients and optimizer
    assert "Exercise 8.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="ZeRO-2 keeps the full bf16 weights"):
        check_exercise_8_2(16 * xl / 8 / 1e9)  # everything sharded: that is ZeRO-3


def test_8_3(capsys):
    check_exercise_8_3(16)
    assert "Exercise 8.3: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="is not the largest that fits"):
        check_exercise_8_3(17)


def test_8_4(capsys):
    check_exercise_8_4(apply_activation_checkpointing(GPTModel(CFG), every=2))
    assert "Exercise 8.4: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="wrap blocks"):
        check_exercise_8_4(apply_activation_checkpointing(GPTModel(CFG), every=1))
    odd = GPTModel(CFG)
    odd.trf_blocks[1] = CheckpointedBlock(odd.trf_blocks[1])
    with pytest.raises(AssertionError, match=r"the blocks checkpointed are \[1\]"):
        check_exercise_8_4(odd)
    with pytest.raises(AssertionError, match="build it from DEEPER_CONFIG"):
        check_exercise_8_4(apply_activation_checkpointing(GPTModel({**CFG, "n_layers": 2}), every=2))
