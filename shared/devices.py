"""Where tensors run: pick a device by name ("auto" takes the best one this machine has), with a clear error
for a device that is not there. Appendix A explains devices; every command and chapter picks one this way.

Beyond the book: `compare_training_on_devices` trains copies of one model on the CPU and on a GPU and
says whether their losses agree (`python -m shared.device_check` runs it on a tiny GPT).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """`torch.device(name)`, checked to exist; "auto" means a CUDA GPU, else an Apple GPU, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device name: use one of {', '.join(DEVICE_CHOICES)}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}, but PyTorch sees no CUDA GPU. Use 'cpu' (or 'auto').")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"numbered from 0. Use 'cuda:0' ... 'cuda:{torch.cuda.device_count() - 1}'.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}, but this machine has no Apple GPU available. Use 'cpu' (or 'auto').")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported here: use one of {', '.join(DEVICE_CHOICES)}.")
    return device


# In float32 with TF32 off, rounding moves a tiny GPT's losses over 8 steps by about 1e-6 (the CPU's float32
# losses against float64's), so a correct GPU agrees far within this; a faulty kernel is off by far more.
DEFAULT_TOLERANCE = 1e-3


def memory_in_use_mib(device: torch.device) -> float | None:
    """The memory this process holds now, in MiB: CUDA tensors on a CUDA GPU, the resident set on a Linux
    CPU (VmRSS); None elsewhere. Subtracted from `peak_memory_mib`, it gives what one stage needed."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 2**10 for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def peak_memory_mib(device: torch.device) -> float | None:
    """The most memory this process has used so far, in MiB: on a CUDA GPU the tensors' peak
    (`torch.cuda.max_memory_allocated`), on a CPU the peak resident set of the whole process; None elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type != "cpu":
        return None
    try:  # Linux: this program's peak (ru_maxrss would also count what a parent held when it started us)
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 2**10 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, kilobytes elsewhere
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


@dataclass(frozen=True)
class DeviceComparison:
    """The loss at each training step on the CPU and on `device`, and the largest difference allowed between them."""

    device: torch.device
    cpu_losses: tuple[float, ...]
    device_losses: tuple[float, ...]
    tolerance: float

    @property
    def differences(self) -> tuple[float, ...]:
        """|cpu loss - device loss| at each step (NaN where a loss is not a number)."""
        return tuple(abs(cpu - dev) for cpu, dev in zip(self.cpu_losses, self.device_losses))

    @property
    def agree(self) -> bool:
        """Whether every step's two losses are finite and within `tolerance` of each other."""
        return all(math.isfinite(cpu) and math.isfinite(dev) and abs(cpu - dev) <= self.tolerance
                   for cpu, dev in zip(self.cpu_losses, self.device_losses))


def training_losses(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, device: torch.device, *,
                    steps: int, lr: float) -> list[float]:
    """Train a copy of `model` on `device` for `steps` AdamW steps on one batch; the cross-entropy loss before each."""
    model = copy.deepcopy(model).to(device)
    model.train()
    inputs, targets = inputs.to(device), targets.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def compare_training_on_devices(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                                device: torch.device | str, *, steps: int = 8, lr: float = 3e-3,
                                tolerance: float = DEFAULT_TOLERANCE) -> DeviceComparison:
    """Train copies of `model` (a language model built on the CPU) on the CPU and on `device`; compare the losses.

    Both copies start from the same weights and see the same batch. TF32 matmuls are off during the check
    (the caller's setting is restored afterwards), so a correct GPU must agree with the CPU within `tolerance`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps is {steps!r}: train at least 1 step, e.g. steps=8.")
    for name, value in (("tolerance", tolerance), ("lr", lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} is {value!r}: it must be a positive finite number, e.g. "
                             f"{name}={DEFAULT_TOLERANCE if name == 'tolerance' else 3e-3}.")
    if inputs.shape != targets.shape or inputs.dim() != 2:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must be the same "
                         "(batch, tokens) shape: targets are the inputs shifted by one token.")
    device = pick_device(device) if isinstance(device, str) else device
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 on CUDA: float32 matmuls as on the CPU
    try:
        cpu_losses = training_losses(model, inputs, targets, torch.device("cpu"), steps=steps, lr=lr)
        device_losses = training_losses(model, inputs, targets, device, steps=steps, lr=lr)
    finally:
        torch.set_float32_matmul_precision(previous)
    return DeviceComparison(device, tuple(cpu_losses), tuple(device_losses), float(tolerance))
