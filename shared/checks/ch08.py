"""Checks for chapter 8's exercises (scaling up): bytes per parameter, ZeRO, the largest batch, checkpointing."""

from __future__ import annotations

import copy

import torch

from shared.checks.common import correct, not_attempted
from shared.memory import CheckpointedBlock, estimate_memory, measure_activation_bytes
from shared.transformer import GPT_CONFIG_124M, GPT_CONFIG_1558M


def check_exercise_8_1(sgd_momentum_bytes) -> None:
    """Exercise 8.1: bytes per parameter (weights, gradients, optimizer state) of fp32 training with SGD + momentum."""
    if not_attempted("8.1", sgd_momentum_bytes):
        return
    assert isinstance(sgd_momentum_bytes, (tuple, list)) and len(sgd_momentum_bytes) == 3, (
        f"give three numbers (weights, gradients, optimizer_state), not {sgd_momentum_bytes!r}"
    )
    weights, gradients, state = sgd_momentum_bytes
    assert (weights, gradients) == (4, 4), (
        f"weights and gradients take {weights} and {gradients} bytes; in fp32 each value is 4 bytes"
    )
    assert state == 4, (
        f"the optimizer state takes {state} bytes per parameter; SGD with momentum keeps ONE fp32 buffer "
        "per weight (the running velocity), AdamW two (first and second moments)"
    )
    correct("8.1", "12 bytes per parameter: AdamW's second moment is what makes it 16.")


def check_exercise_8_2(gb_per_device) -> None:
    """Exercise 8.2: GB per device of GPT-2 XL's weights, gradients and AdamW state (mixed, ZeRO-2, 8 devices)."""
    if not_attempted("8.2", gb_per_device):
        return
    estimate = estimate_memory(GPT_CONFIG_1558M, precision="mixed", strategy="zero2", world_size=8)
    expected = (estimate.parameters + estimate.gradients + estimate.optimizer_state) / 1e9
    assert isinstance(gb_per_device, (int, float)), f"give one number of GB (10^9 bytes), not {gb_per_device!r}"
    ddp = estimate_memory(GPT_CONFIG_1558M, precision="mixed").total / 1e9
    assert abs(gb_per_device - expected) <= 0.01 * expected, (
        f"{gb_per_device} GB is not it. ZeRO-2 keeps the full bf16 weights (2 bytes/param) on every device but "
        f"splits the bf16 gradients (2) and the fp32 master weights and moments (12) over the 8 devices "
        f"(without sharding it would be {ddp:.1f} GB). Leave the activations out."
    )
    correct("8.2", f"{expected:.2f} GB per device, against {ddp:.1f} GB without sharding.")


def check_exercise_8_3(max_batch_size) -> None:
    """Exercise 8.3: the most 1,024-token sequences GPT-2 small can train on at once in 16 GB (fp32, 1 device)."""
    if not_attempted("8.3", max_batch_size):
        return
    budget = 16e9
    fits = [b for b in range(1, 200) if estimate_memory(GPT_CONFIG_124M, batch_size=b).total <= budget]
    expected = max(fits)
    assert isinstance(max_batch_size, int) and not isinstance(max_batch_size, bool), (
        f"give a whole number of sequences, not {max_batch_size!r}"
    )
    per_sequence = estimate_memory(GPT_CONFIG_124M, batch_size=1).activations / 1e9
    assert max_batch_size == expected, (
        f"batch size {max_batch_size} is not the largest that fits. The weights, gradients and AdamW state "
        f"take a fixed 16 bytes/param; each sequence adds {per_sequence:.2f} GB of activations. "
        "Find the largest batch_size whose estimate_memory(...).total is at most 16e9 bytes."
    )
    correct("8.3", f"{expected} sequences; gradient accumulation reaches a larger batch in several micro-batches.")


def check_exercise_8_4(model) -> None:
    """Exercise 8.4: a GPTModel with activation checkpointing on every other block (0, 2, ...), same gradients."""
    if not_attempted("8.4", model):
        return
    blocks = list(model.trf_blocks)
    assert len(blocks) == 4, (
        f"the model has {len(blocks)} transformer blocks; build it from DEEPER_CONFIG, which has 4 (n_layers=4)"
    )
    wrapped = [isinstance(block, CheckpointedBlock) for block in blocks]
    expected = [i % 2 == 0 for i in range(len(blocks))]
    assert wrapped == expected, (
        f"the blocks checkpointed are {[i for i, w in enumerate(wrapped) if w]}; wrap blocks "
        f"{[i for i, e in enumerate(expected) if e]} (every other one, from block 0) in CheckpointedBlock"
    )
    plain = copy.deepcopy(model)
    for i, block in enumerate(plain.trf_blocks):
        if isinstance(block, CheckpointedBlock):
            plain.trf_blocks[i] = block.block
    torch.manual_seed(0)
    tokens = torch.randint(0, model.cfg["vocab_size"], (2, min(16, model.cfg["context_length"]) + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    model.eval(), plain.eval()  # no dropout, so both runs compute the same thing
    model.zero_grad(), plain.zero_grad()
    saved = measure_activation_bytes(model, inputs, targets)
    saved_plain = measure_activation_bytes(plain, inputs, targets)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), f"the gradient of {name} differs from the plain model's"
    assert saved < saved_plain, "checkpointing should keep fewer activations than the plain model"
    correct("8.4", f"same gradients, {saved / saved_plain:.0%} of the plain model's saved activations.")
