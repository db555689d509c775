"""The device check: a GPU whose training losses differ from the CPU's is caught and the reader told what to do.

No GPU is needed: a "faulty GPU" is the CPU with its losses bent after the first step, as a broken
backward pass or optimizer kernel would bend them.
"""

import math

import pytest
import torch

import shared.device_check as device_check
import shared.devices as devices
from shared.device_check import TINY_GPT_CONFIG, check_device, main, report
from shared.devices import DeviceComparison, compare_training_on_devices

REAL_TRAINING_LOSSES = devices.training_losses
pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py


@pytest.fixture(scope="module")
def cpu_check() -> DeviceComparison:
    return check_device("cpu", steps=4)


def fake_gpu(monkeypatch, bend=lambda step, loss: loss, error: Exception | None = None):
    """Make "mps" a device that trains on the CPU and returns `bend(step, loss)` (or raises `error`)."""
    def training_losses(model, inputs, targets, device, **kwargs):
        losses = REAL_TRAINING_LOSSES(model, inputs, targets, torch.device("cpu"), **kwargs)
        if device.type == "cpu":
            return losses
        if error is not None:
            raise error
        return [bend(step, loss) for step, loss in enumerate(losses)]

    monkeypatch.setattr(devices, "training_losses", training_losses)
    monkeypatch.setattr(device_check, "pick_device", lambda name: torch.device("mps"))


def test_cpu_against_cpu_agrees_exactly(cpu_check):
    assert cpu_check.device == torch.device("cpu")
    assert len(cpu_check.cpu_losses) == 4
    assert cpu_check.device_losses == cpu_check.cpu_losses  # same weights, same batch, same kernels: bit for bit
    assert cpu_check.differences == (0.0,) * 4 and cpu_check.agree


def test_the_losses_fall_from_a_uniform_guess(cpu_check):
    losses = cpu_check.cpu_losses
    assert losses[0] == pytest.approx(math.log(TINY_GPT_CONFIG["vocab_size"]), abs=0.5)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_the_check_disables_tf32_and_leaves_the_callers_settings_as_they_were(monkeypatch):
    seen = []

    def training_losses(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return REAL_TRAINING_LOSSES(*args, **kwargs)

    monkeypatch.setattr(devices, "training_losses", training_losses)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # TF32 allowed, as a reader may have set it
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(1)
        expected = torch.rand(3)
        torch.manual_seed(1)
        check_device("cpu", steps=1)
        assert torch.equal(torch.rand(3), expected)  # the caller's random sequence is untouched
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_float32_matmul_precision(before)
        torch.set_num_threads(threads)
    assert seen == ["highest", "highest"]  # float32 matmuls on both runs


def test_a_device_with_wrong_losses_is_reported_as_disagreeing(monkeypatch):
    fake_gpu(monkeypatch, bend=lambda step, loss: loss + 0.01 * step)
    result = check_device("mps", steps=4)
    assert result.device.type == "mps"
    assert result.differences[0] == 0.0  # same starting weights: the first loss agrees
    assert max(result.differences) == pytest.approx(0.03)
    assert not result.agree


def test_a_device_within_the_tolerance_agrees(monkeypatch):
    fake_gpu(monkeypatch, bend=lambda step, loss: loss + 1e-5)  # float32 rounding, as a correct GPU differs
    assert check_device("mps", steps=2).agree


def test_a_nan_loss_never_agrees():
    result = DeviceComparison(torch.device("mps"), (5.5, 5.4), (5.5, math.nan), tolerance=1e-3)
    assert not result.agree
    assert "WRONG: the loss on mps is nan at step 2, where the CPU's is 5.400000" in report(result)


def test_the_command_exits_1_with_advice_when_the_losses_disagree(monkeypatch, capsys):
    fake_gpu(monkeypatch, bend=lambda step, loss: loss + 0.1 * step)
    with pytest.raises(SystemExit) as stop:
        main(["--device", "mps", "--steps", "3"])
    assert stop.value.code == 1
    out = capsys.readouterr().out
    assert "loss on mps" in out and "WRONG: the losses on mps differ from the CPU's by up to 0.2" in out
    assert "python -m shared.train --device cpu" in out
    assert "PYTORCH_ENABLE_MPS_FALLBACK=1" in out and f"PyTorch {torch.__version__}" in out


def test_the_command_exits_1_with_advice_when_training_on_the_device_fails(monkeypatch, capsys):
    fake_gpu(monkeypatch, error=NotImplementedError("The operator 'aten::foo' is not implemented for MPS"))
    with pytest.raises(SystemExit) as stop:
        main(["--device", "mps", "--steps", "2"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "training on mps" in err and "aten::foo" in err and "PYTORCH_ENABLE_MPS_FALLBACK=1" in err


def test_the_command_passes_a_device_that_agrees(monkeypatch, capsys):
    fake_gpu(monkeypatch)
    main(["--device", "mps", "--steps", "2"])  # returns: exit status 0
    assert "OK: the losses on mps agree with the CPU's within 0.001" in capsys.readouterr().out


def test_the_command_on_the_cpu_says_there_is_nothing_to_compare(capsys):
    main(["--device", "cpu", "--steps", "2"])
    out = capsys.readouterr().out
    assert "No other device to compare" in out and "loss on cpu" in out and "difference" not in out


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps 0: train at least 1 step"),
    (["--tolerance", "0"], "--tolerance 0.0: use a positive finite number"),
    (["--tolerance", "nan"], "--tolerance nan: use a positive finite number"),
    (["--tolerance", "inf"], "--tolerance inf: use a positive finite number"),
    (["--device", "gpu"], "--device gpu: device 'gpu' is not a device name: use one of auto, cpu"),
])
def test_bad_arguments_are_refused_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps is 0: train at least 1 step"),
    (dict(tolerance=-1.0), "tolerance is -1.0: it must be a positive finite number"),
    (dict(tolerance=math.nan), "tolerance is nan"),
    (dict(lr=math.inf), "lr is inf"),
])
def test_the_library_refuses_bad_settings(kwargs, message):
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=message):
        compare_training_on_devices(torch.nn.Embedding(2, 2), tokens, tokens, "cpu", **kwargs)


def test_the_library_refuses_targets_of_another_shape():
    with pytest.raises(ValueError, match=r"inputs \(1, 4\) and targets \(1, 3\) must be the same"):
        compare_training_on_devices(torch.nn.Embedding(2, 2), torch.zeros(1, 4, dtype=torch.long),
                                    torch.zeros(1, 3, dtype=torch.long), "cpu")
