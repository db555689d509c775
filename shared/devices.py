"""Where tensors run: pick a device by name ("auto" takes the best one this machine has), with a clear error
for a device that is not there. Appendix A explains devices; every command and chapter picks one this way.
"""

from __future__ import annotations

import torch

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
