"""Faster `nn.Linear` layers for generating text on a CPU, with the model code unchanged.

Generating one token at a time multiplies every weight matrix by a single vector, so each step is
limited by how fast the weights stream from memory. PyTorch's CPU builds carry two math libraries:
`F.linear` calls MKL, whose matrix-vector kernel reads `nn.Linear`'s (out, in) layout at about half
the speed that the oneDNN library manages on the same tensor (measured in `benchmarks/`). Inside
`fast_cpu_linear()`, `F.linear` calls that need no gradient run oneDNN's kernel; everything else
(training, GPUs, other dtypes) runs exactly as before. The mode sees every torch call made in Python,
which costs time of its own: enter it only for a float32 model on a CPU (`is_cpu_float32`).
"""

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN's linear kernel (x86 and ARM CPU builds usually do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def is_cpu_float32(model: nn.Module) -> bool:
    """Whether every parameter of `model` is a float32 tensor on the CPU: where `fast_cpu_linear` pays off.

    On a GPU, or in another dtype, the mode would change nothing but still intercept every torch call.
    """
    return all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())


def _runs_on_onednn(x, weight, bias) -> bool:
    """True for a float32 CPU product that autograd does not need to see, with matching shapes."""
    tensors = [x, weight] if bias is None else [x, weight, bias]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False  # training: autograd needs F.linear's backward
    # Anything unusual goes to F.linear, which also gives the clearer error for a shape mismatch.
    return (x.dim() >= 1 and weight.dim() == 2 and x.shape[-1] == weight.shape[1]
            and (bias is None or bias.shape == (weight.shape[0],)))


class OneDNNLinearMode(TorchFunctionMode):
    """Routes eligible `F.linear` calls (what `nn.Linear.forward` calls) to oneDNN's kernel."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if _runs_on_onednn(x, weight, bias):
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return func(*args, **kwargs)


def fast_cpu_linear() -> contextlib.AbstractContextManager:
    """A context in which `nn.Linear` layers run oneDNN's kernel for inference on CPU float32 tensors.

    The results equal `F.linear`'s within float rounding. Where oneDNN is missing, it does nothing.
    """
    return OneDNNLinearMode() if onednn_linear_available() else contextlib.nullcontext()
