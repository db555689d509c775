"""Choosing a device: "auto" takes the best there is; a device that is not there is named with the fix."""

import pytest
import torch

from shared.devices import pick_device


def test_auto_and_cpu():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto").type == pick_device().type == expected


@pytest.mark.parametrize("name, message", [
    ("gpu", "'gpu' is not a device name: use one of auto, cpu, cuda"),
    ("xla", "'xla' is not supported here"),
])
def test_a_name_that_is_no_device_is_refused(name, message):
    with pytest.raises(ValueError, match=message):
        pick_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so cuda is not refused")
def test_cuda_without_a_gpu_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU. Use 'cpu'"):
        pick_device("cuda:0")
