"""Chapter 8's memory calculator against hand arithmetic and measurements, and the tools it relies on."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.memory import (
    apply_activation_checkpointing,
    count_parameters_from_config,
    estimate_memory,
    measure_activation_bytes,
    measure_training_state,
)
from shared.pretraining import train_step
from shared.transformer import GPT_CONFIG_124M, GPTModel

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"vocab_size": 300, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 3,
         "drop_rate": 0.0, "qkv_bias": False}


def batch(cfg, batch_size=4, seed=0):
    tokens = torch.randint(0, cfg["vocab_size"], (batch_size, cfg["context_length"] + 1),
                           generator=torch.Generator().manual_seed(seed))
    return tokens[:, :-1], tokens[:, 1:]


# -- arithmetic --------------------------------------------------------------------------------------


def test_bytes_per_parameter_by_hand():
    n = 1_000_000
    fp32 = estimate_memory(n, precision="fp32")
    assert (fp32.parameters, fp32.gradients, fp32.optimizer_state, fp32.activations) == (4e6, 4e6, 8e6, 0)
    assert fp32.total == 16 * n  # the usual 16 bytes per parameter for AdamW
    assert estimate_memory(n, precision="bf16").total == 8 * n
    mixed = estimate_memory(n, precision="mixed")
    assert (mixed.parameters, mixed.gradients, mixed.optimizer_state) == (2e6, 2e6, 12e6)


@pytest.mark.parametrize("strategy, expected", [
    ("ddp", (2, 2, 12)), ("zero1", (2, 2, 3)), ("zero2", (2, 0.5, 3)),
    ("zero3", (0.5, 0.5, 3)), ("fsdp", (0.5, 0.5, 3)),
])
def test_sharding_divides_the_right_parts(strategy, expected):
    estimate = estimate_memory(1_000, precision="mixed", strategy=strategy, world_size=4)
    assert (estimate.parameters, estimate.gradients, estimate.optimizer_state) == tuple(1_000 * e for e in expected)


def test_parameter_count_matches_the_model_and_the_book():
    for cfg in (SMALL, {**SMALL, "qkv_bias": True, "n_layers": 1}):
        assert count_parameters_from_config(cfg) == sum(p.numel() for p in GPTModel(cfg).parameters())
    assert count_parameters_from_config(GPT_CONFIG_124M) == 163_009_536  # chapter 4's total (untied output head)


def test_activations_scale_with_tokens_and_are_not_sharded():
    one = estimate_memory(SMALL, batch_size=1)
    assert estimate_memory(SMALL, batch_size=3).activations == 3 * one.activations
    assert estimate_memory(SMALL, batch_size=1, context_length=8).activations == one.activations / 2
    assert estimate_memory(SMALL, strategy="zero3", world_size=8).activations == one.activations
    assert estimate_memory(SMALL, precision="mixed").activations == one.activations / 2


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "zero4"}, "strategy='zero4'"),
    ({"precision": "fp8"}, "precision='fp8'"),
    ({"world_size": 0}, "world_size=0"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_memory(SMALL, **kwargs)
    with pytest.raises(TypeError, match="config dict or a positive parameter count"):
        estimate_memory(-5)


# -- measurements ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [SMALL, {**SMALL, "emb_dim": 48, "n_heads": 6, "qkv_bias": True, "vocab_size": 100}])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_estimate_matches_measurement_within_3_percent(cfg, checkpointing):
    torch.manual_seed(123)
    model = GPTModel(cfg)
    if checkpointing:
        apply_activation_checkpointing(model)
    inputs, targets = batch(cfg)
    measured = measure_activation_bytes(model, inputs, targets)
    predicted = estimate_memory(cfg, batch_size=4, checkpointing=checkpointing).activations
    assert abs(measured / predicted - 1) < 0.03


def test_checkpointing_gives_the_same_gradients_with_fewer_activations():
    inputs, targets = batch(SMALL)
    grads, saved = {}, {}
    for every in (None, 1, 2):
        torch.manual_seed(123)
        model = GPTModel(SMALL)
        if every:
            apply_activation_checkpointing(model, every=every)
        saved[every] = measure_activation_bytes(model, inputs, targets)
        grads[every] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(grads[None], grads[1], atol=1e-7) and torch.allclose(grads[None], grads[2], atol=1e-7)
    assert saved[1] < saved[2] < saved[None]
    with torch.no_grad():  # generation and evaluation bypass the checkpoint
        assert model(inputs).shape == (4, SMALL["context_length"], SMALL["vocab_size"])


def test_gradient_accumulation_equals_the_large_batch():
    inputs, targets = batch(SMALL, batch_size=8)
    grads = []
    for micro_batches in ([(inputs, targets)], list(zip(inputs.split(2), targets.split(2)))):
        torch.manual_seed(123)
        model = GPTModel(SMALL)
        train_step(model, micro_batches, torch.optim.AdamW(model.parameters()), "cpu")
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).abs().max() < 1e-6


def test_bf16_autocast_loss_within_0_05_of_fp32():
    inputs, targets = batch(SMALL, batch_size=8)
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(123)
        model = GPTModel(SMALL)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses[precision] = [train_step(model, [(inputs, targets)], optimizer, "cpu", precision=precision)[0]
                             for _ in range(6)]
    assert losses["fp32"][-1] < losses["fp32"][0] - 0.5  # it learns
    assert max(abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"])) < 0.05


def test_measure_training_state_counts_adamw_moments():
    torch.manual_seed(123)
    model = GPTModel(SMALL)
    optimizer = torch.optim.AdamW(model.parameters())
    train_step(model, [batch(SMALL)], optimizer, "cpu")
    measured = measure_training_state(model, optimizer)
    predicted = estimate_memory(SMALL)
    assert measured == {"parameters": predicted.parameters, "gradients": predicted.gradients,
                        "optimizer_state": predicted.optimizer_state}


def test_two_process_sharded_memory_matches_the_calculator():
    script = ROOT / "chapters" / "ch08_scaling_up" / "sharded_memory.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--rdzv-backend=c10d",
               "--rdzv-endpoint=localhost:0", str(script), "--steps", "2"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    runs = {r["strategy"]: r for r in (json.loads(line.removeprefix("RESULT "))
                                       for line in completed.stdout.splitlines() if line.startswith("RESULT "))}
    assert set(runs) == {"ddp", "fsdp"}
    for run in runs.values():
        assert len(run["per_rank"]) == 2
        for measured in run["per_rank"]:
            assert measured == run["estimate"]
    assert runs["fsdp"]["per_rank"][1]["optimizer_state"] * 2 == runs["ddp"]["per_rank"][1]["optimizer_state"]
    assert runs["ddp"]["losses"] == pytest.approx(runs["fsdp"]["losses"], abs=1e-4)
