"""The appendix A self-checks accept the worked solutions, reject wrong answers, and pass over stubs."""

from importlib.metadata import version

import pytest
import torch

from shared.checks import (
    check_exercise_A_1,
    check_exercise_A_2,
    check_exercise_A_3,
    check_exercise_A_4,
)
from shared.checks.appA import APPENDIX_A_PACKAGES


def test_untouched_exercises_say_so_and_pass(capsys) -> None:
    check_exercise_A_1(None)
    check_exercise_A_2(None)
    check_exercise_A_3(None)
    check_exercise_A_4(None)
    assert capsys.readouterr().out.count("not attempted yet") == 4


def test_exercise_A_1(monkeypatch, capsys) -> None:
    check_exercise_A_1(torch.device("cpu"))
    check_exercise_A_1("cpu")
    assert capsys.readouterr().out.count("Exercise A.1: correct!") == 2
    with pytest.raises(AssertionError, match="no device called 'gpu': an NVIDIA GPU is 'cuda'"):
        check_exercise_A_1("gpu")
    with pytest.raises(AssertionError, match="not a device name PyTorch knows"):
        check_exercise_A_1("graphics-card")
    with pytest.raises(AssertionError, match="give a torch.device"):
        check_exercise_A_1(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(AssertionError, match="cannot compute on 'cuda'.* offers \\['cpu'\\]"):
        check_exercise_A_1(torch.device("cuda"))
    with pytest.raises(AssertionError, match="cannot compute on 'mps'"):
        check_exercise_A_1("mps")


def test_exercise_A_2(capsys) -> None:
    solution = {name: version(name) for name in APPENDIX_A_PACKAGES}
    check_exercise_A_2(solution)
    assert "Exercise A.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="no entry for \\['tqdm'\\]"):
        check_exercise_A_2({name: v for name, v in solution.items() if name != "tqdm"})
    check_exercise_A_2({**solution, "torch": torch.__version__})  # with or without the build tag
    with pytest.raises(AssertionError, match="numpy: the answer says '1.0.0', but the installed version is"):
        check_exercise_A_2({**solution, "numpy": "1.0.0"})
    with pytest.raises(AssertionError, match="give a dict"):
        check_exercise_A_2(list(solution.values()))


def test_exercise_A_3(capsys) -> None:
    check_exercise_A_3(752)
    check_exercise_A_3(torch.tensor(752))
    assert capsys.readouterr().out.count("Exercise A.3: correct!") == 2
    with pytest.raises(AssertionError, match="700 counts the weights only"):
        check_exercise_A_3(700)
    with pytest.raises(AssertionError, match="the answer is 2,213, but NeuralNetwork\\(2, 2\\)"):
        check_exercise_A_3(2213)  # NeuralNetwork(50, 3)'s count
    with pytest.raises(AssertionError, match="give a whole number"):
        check_exercise_A_3(752.5)


def test_exercise_A_4(capsys) -> None:
    def matmul_by_dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.stack([torch.dot(row, col) for col in b.T]) for row in a])

    check_exercise_A_4(matmul_by_dots)
    assert "Exercise A.4: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="has shape \\(3, 5\\); a @ b has \\(5, 3\\)"):
        check_exercise_A_4(lambda a, b: matmul_by_dots(a, b).T)
    with pytest.raises(AssertionError, match="differs from a @ b"):
        check_exercise_A_4(lambda a, b: a[:, :3] * b[:5].T.sum())  # right shape, wrong numbers
    with pytest.raises(AssertionError, match="returned a list"):
        check_exercise_A_4(lambda a, b: (a @ b).tolist())
    with pytest.raises(AssertionError, match="should be a function"):
        check_exercise_A_4(torch.zeros(5, 3))
