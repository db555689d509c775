"""Checks for appendix E's exercises (LoRA): the parameters LoRA adds, and a LoRA update merged into the weight."""

from __future__ import annotations

import torch
import torch.nn as nn

from shared.checks.common import correct, is_count, not_attempted
from shared.lora import LinearWithLoRA


def check_exercise_E_1(num_lora_parameters, model, rank: int) -> None:
    """Exercise E.1: how many parameters LoRA of rank `rank` adds when it wraps every nn.Linear of `model`."""
    if not_attempted("E.1", num_lora_parameters):
        return
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert not any(isinstance(module, LinearWithLoRA) for module in model.modules()), (
        "pass the model without LoRA (before replace_linear_with_lora): the count is of what LoRA would add to it"
    )
    expected = sum(rank * (layer.in_features + layer.out_features) for layer in linears)
    assert is_count(num_lora_parameters), f"the answer is {num_lora_parameters!r}; give a whole number of parameters"
    assert int(num_lora_parameters) == expected, (
        f"the answer is {int(num_lora_parameters):,}, but LoRA of rank {rank} adds {expected:,} parameters to "
        f"this model's {len(linears)} linear layers: each gets A (in_features x rank) and B (rank x out_features), "
        "so rank * (in_features + out_features) per layer, and no bias"
    )
    correct("E.1", f"{expected:,} parameters over {len(linears)} linear layers.")


def check_exercise_E_2(merged_weight, layer) -> None:
    """Exercise E.2: the weight of one nn.Linear with its trained LoRA update folded in."""
    if not_attempted("E.2", merged_weight):
        return
    assert isinstance(layer, LinearWithLoRA), f"layer is a {type(layer).__name__}; pass the LinearWithLoRA you merged"
    assert layer.lora.B.abs().max() > 0, "this layer's B is still zero: pick a layer of the trained LoRA model"
    linear = layer.linear
    assert isinstance(merged_weight, torch.Tensor) and merged_weight.shape == linear.weight.shape, (
        f"merged_weight should be a tensor of nn.Linear's shape (out_features, in_features) = "
        f"{tuple(linear.weight.shape)}, not {getattr(merged_weight, 'shape', type(merged_weight).__name__)}"
    )
    with torch.no_grad():
        x = torch.randn(4, linear.in_features, dtype=linear.weight.dtype, device=linear.weight.device)
        expected = layer(x)
        got = torch.nn.functional.linear(x, merged_weight.to(x.device), linear.bias)
    error = (got - expected).abs().max().item()
    assert error < 1e-4, (
        f"a layer with your merged weight differs from the LoRA layer by up to {error:.3g}: the update is "
        "(alpha / rank) * (A @ B), transposed to nn.Linear's (out, in) layout, added to linear.weight"
    )
    correct("E.2", "a plain nn.Linear with this weight gives the LoRA layer's outputs.")
