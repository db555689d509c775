"""Appendix E: low-rank adaptation (LoRA), finetuning a model through small added matrices.

Instead of updating a weight matrix W (out x in), LoRA freezes it and learns an update of low rank,
W + (alpha / rank) * (A @ B).T, with A (in x rank) and B (rank x out). B starts at zero, so at the
start the model computes exactly what it did before; only A and B train, which for a small rank is a
tiny share of the parameters. After training, `merge_lora` folds the update into W, so inference
costs what it did without LoRA.

The book's names: `LoRALayer`, `LinearWithLoRA`, `replace_linear_with_lora`. One difference: the
book's printed code scales the update by `alpha`, while the LoRA paper (Hu et al., 2021), most
libraries and the book's repository today scale it by `alpha / rank`, so that changing the rank does
not change the size of the update at the start of training. We follow the paper. The two differ by
a factor of `rank` even when `alpha == rank` (the book's rank=16, alpha=16 gives a factor of 16
there, 1 here); `alpha=rank * book_alpha` reproduces the book's scaling.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class LoRALayer(nn.Module):
    """The low-rank update alone: x -> (alpha / rank) * (x @ A @ B).

    A is initialised like an `nn.Linear` weight (Kaiming-uniform), B with zeros, so the update is
    zero until B has been trained.

    Defined in section E.4 of the book (appendix E), which scales by `alpha`; `delta_weight` is beyond it.
    """

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank={rank!r}: the rank of the update must be a whole number of at least 1, e.g. 8.")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise TypeError(f"alpha={alpha!r}: alpha scales the update and must be a number, e.g. 16.")
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.A @ self.B)

    def delta_weight(self) -> torch.Tensor:
        """The update in `nn.Linear`'s (out, in) layout: linear.weight + delta_weight() is the merged weight."""
        return self.scaling * (self.A @ self.B).T


class LinearWithLoRA(nn.Module):
    """An `nn.Linear` layer plus a `LoRALayer` beside it: linear(x) + lora(x).

    Defined in section E.4 of the book (appendix E).
    """

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"LinearWithLoRA wraps an nn.Linear layer, not {type(linear).__name__}.")
        self.linear = linear
        weight = linear.weight
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha).to(weight.device, weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)


def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> None:
    """Wrap every `nn.Linear` inside `model` in a `LinearWithLoRA`, in place.

    Freeze the model's own parameters first (`requires_grad = False`): the new A and B matrices are
    created trainable, so afterwards only they train.

    Defined in section E.4 of the book (appendix E).
    """
    for name, module in model.named_children():
        if isinstance(module, LinearWithLoRA):
            raise ValueError(
                f"{name} already has LoRA: replace_linear_with_lora was called twice on this model. "
                "Start again from a model without LoRA (e.g. reload it) and call it once."
            )
        if isinstance(module, nn.Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha))
        else:
            replace_linear_with_lora(module, rank, alpha)  # look inside blocks, Sequentials, ...


def merge_lora(model: nn.Module) -> None:
    """Fold each `LinearWithLoRA`'s update into its linear layer's weight and put the plain `nn.Linear` back.

    In place. The merged model computes the same outputs (up to float rounding) with no extra
    matrix products, and has the parameters, and the state-dict keys, of the model before LoRA.

    Beyond the book.
    """
    for name, module in model.named_children():
        if isinstance(module, LinearWithLoRA):
            with torch.no_grad():
                module.linear.weight += module.lora.delta_weight()
            setattr(model, name, module.linear)
        else:
            merge_lora(module)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameters of `model`, or of those that will train (`requires_grad`) only.

    Beyond the book (which sums `p.numel()` inline).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
