"""Choosing a device: "auto" takes the best there is; a device that is not there is named with the fix."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.devices import pick_device

ROOT = Path(__file__).resolve().parent.parent


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


def test_peak_memory_follows_what_the_process_touched():
    # In a fresh process: here, earlier tests may already have set a peak that 256 MiB would not pass.
    code = ("import torch; from shared.devices import peak_memory_mib as p; cpu = torch.device('cpu'); "
            "before = p(cpu); big = torch.ones(64 * 2**20); after = p(cpu); del big; "
            "print(before, after, p(cpu), p(torch.device('meta')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after, later, meta = result.stdout.split()
    assert float(after) - float(before) > 200 and float(later) - float(before) > 200  # 256 MiB written; it stays
    assert meta == "None"
