"""Chapter 8's memory arithmetic: how many bytes a GPT needs per device to train, and how to measure them.

Training memory has four parts: the weights, their gradients, the optimizer's state (AdamW keeps two
moments per weight) and the activations the forward pass saves for the backward pass. The first
three scale with the parameter count and can be sharded across data-parallel processes (ZeRO stages
1-3, PyTorch's fully sharded data parallel); activations scale with the tokens in a batch and shrink
with activation checkpointing. `estimate_memory` predicts all four; the `measure_*` functions count
what a real model and optimizer hold, so the two can be compared.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

# Bytes per parameter for AdamW: (weights, gradients, optimizer state).
# "mixed" counts the layout of the ZeRO paper: bf16 weights and gradients for compute, and in the
# optimizer an fp32 master copy of the weights plus fp32 first and second moments (4 + 4 + 4).
# (torch.autocast keeps fp32 weights and gradients instead, 4 + 4 + 8: the same 16 bytes in total.)
BYTES_PER_PARAM = {
    "fp32": (4, 4, 8),
    "bf16": (2, 2, 4),
    "mixed": (2, 2, 12),
}
# Bytes of one saved activation value: the compute dtype (mixed precision computes in bf16).
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2, "mixed": 2}
# Which of (weights, gradients, optimizer state) each strategy splits across the processes.
SHARDED = {
    "ddp": (False, False, False),
    "zero1": (False, False, True),
    "zero2": (False, True, True),
    "zero3": (True, True, True),
    "fsdp": (True, True, True),  # PyTorch's fully sharded data parallel, full sharding = ZeRO-3
}


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.")


def count_parameters_from_config(cfg: dict) -> int:
    """GPTModel(cfg)'s parameter count, from the config alone (the output head is not tied to the embedding)."""
    d, vocab, ctx, layers = cfg["emb_dim"], cfg["vocab_size"], cfg["context_length"], cfg["n_layers"]
    attention = 4 * d * d + d + (3 * d if cfg["qkv_bias"] else 0)  # W_query, W_key, W_value, out_proj (+ biases)
    feed_forward = d * 4 * d + 4 * d + 4 * d * d + d  # two linear layers with biases
    norms = 2 * 2 * d  # scale and shift of norm1 and norm2
    return vocab * d + ctx * d + layers * (attention + feed_forward + norms) + 2 * d + d * vocab


def count_parameters(cfg: dict) -> int:
    """Deprecated name of `count_parameters_from_config` (`shared.lora.count_parameters` counts a model's)."""
    warnings.warn("shared.memory.count_parameters(cfg) is now count_parameters_from_config(cfg).", DeprecationWarning,
                  stacklevel=2)
    return count_parameters_from_config(cfg)


def activation_values_per_token(cfg: dict, checkpointing: bool = False) -> int:
    """How many values GPTModel's forward pass (and the cross-entropy loss) keeps per token for backward.

    Counted for drop_rate=0 and fused attention (use_sdpa=True), as PyTorch saves them on a CPU. Each
    block: its input and norm1's output (2d), the queries, keys and values (3d), the attention output,
    which out_proj also reads as its input (d), norm2's input and output (2d), and the feed-forward's
    hidden layer before and after GELU (8d): 16d, plus the layer norms' means and inverse deviations
    (4) and attention's log-sum-exp (one per head). Then the final norm (2d + 2) and the log-softmax over
    the vocabulary (V). Dropout adds its masks, and attention without the fused kernel its
    n_heads x tokens x tokens weights. With activation checkpointing only each block's input (d) is
    kept; the backward pass recomputes one block at a time, so its peak adds one block's values.
    """
    d, heads, layers = cfg["emb_dim"], cfg["n_heads"], cfg["n_layers"]
    per_block = d if checkpointing else 16 * d + 4 + heads
    return layers * per_block + 2 * d + 2 + cfg["vocab_size"]


@dataclass
class MemoryEstimate:
    """Bytes on one device, by what holds them."""

    parameters: float
    gradients: float
    optimizer_state: float
    activations: float

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def gb(self) -> dict[str, float]:
        """The same numbers in GB (10^9 bytes), rounded to 2 decimals, with the total."""
        parts = {"parameters": self.parameters, "gradients": self.gradients,
                 "optimizer_state": self.optimizer_state, "activations": self.activations, "total": self.total}
        return {name: round(value / 1e9, 2) for name, value in parts.items()}


def estimate_memory(cfg_or_num_params: dict | int, *, batch_size: int = 1, context_length: int | None = None,
                    precision: str = "fp32", strategy: str = "ddp", world_size: int = 1,
                    checkpointing: bool = False) -> MemoryEstimate:
    """Predict the bytes per device of AdamW training: weights, gradients, optimizer state, activations.

    `cfg_or_num_params` is a GPTModel config (activations are then estimated too, for `batch_size`
    sequences of `context_length` tokens, the config's by default) or a bare parameter count (then
    activations are 0). `strategy` says what is split across the `world_size` processes: "ddp" nothing,
    "zero1" the optimizer state, "zero2" also the gradients, "zero3"/"fsdp" also the weights.
    Activations are never sharded: each process runs its own `batch_size` sequences.
    """
    _check_choice("precision", precision, BYTES_PER_PARAM)
    _check_choice("strategy", strategy, SHARDED)
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r}: it is the number of processes, a whole number of at least 1.")
    if isinstance(cfg_or_num_params, dict):
        num_params = count_parameters_from_config(cfg_or_num_params)
        tokens = batch_size * (context_length or cfg_or_num_params["context_length"])
        values_per_token = activation_values_per_token(cfg_or_num_params, checkpointing)
        activations = tokens * values_per_token * ACTIVATION_BYTES[precision]
    elif isinstance(cfg_or_num_params, int) and not isinstance(cfg_or_num_params, bool) and cfg_or_num_params > 0:
        num_params, activations = cfg_or_num_params, 0
    else:
        raise TypeError(f"pass a GPTModel config dict or a positive parameter count, not {cfg_or_num_params!r}.")
    parts = [num_params * nbytes / (world_size if sharded else 1)
             for nbytes, sharded in zip(BYTES_PER_PARAM[precision], SHARDED[strategy])]
    return MemoryEstimate(*parts, activations=activations)


# -- measuring -------------------------------------------------------------------------------------


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of `tensor` this process holds: the local shard of a DTensor (FSDP), else the tensor."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _unique_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (views of one buffer are counted once)."""
    storages = {}
    for tensor in tensors:
        storage = _local(tensor).untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def measure_training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this process holds of the model's parameters, their gradients and the optimizer's state."""
    params = list(model.parameters())
    state = [value for per_param in optimizer.state.values() for value in per_param.values()
             if isinstance(value, torch.Tensor) and value.ndim > 0]  # not AdamW's scalar step counters
    return {
        "parameters": _unique_bytes(params),
        "gradients": _unique_bytes(p.grad for p in params if p.grad is not None),
        "optimizer_state": _unique_bytes(state),
    }


class _LiveTensors(TorchDispatchMode):
    """Remembers every storage that an operation creates, to tell later which are still alive."""

    def __init__(self, ignore: set[int]):
        super().__init__()
        self.ignore = ignore  # storages not to count (the parameters and views of them)
        self.created: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                address = storage.data_ptr()
                known = self.created.get(address)
                if address not in self.ignore and (known is None or known[0].expired()):  # new, or memory reused
                    self.created[address] = (StorageWeakRef(storage), storage.nbytes())
        return out

    def live_bytes(self) -> int:
        return sum(nbytes for ref, nbytes in self.created.values() if not ref.expired())


def measure_activation_bytes(model: nn.Module, input_batch: torch.Tensor, target_batch: torch.Tensor) -> int:
    """Bytes of the tensors still alive after the forward pass and the loss: what backward will need.

    Counts every tensor the forward pass creates that is not a parameter and is still referenced
    when the loss is ready (by the autograd graph, or by activation checkpointing), then runs backward.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with _LiveTensors(ignore=params) as tracker:
        logits = model(input_batch)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
        del logits  # the loss's graph keeps what it needs; the variable would keep the logits alive too
    live = tracker.live_bytes()
    loss.backward()
    return live


# -- activation checkpointing ----------------------------------------------------------------------


class CheckpointedBlock(nn.Module):
    """A transformer block whose activations are recomputed in backward instead of kept from forward.

    Wraps an existing block, so GPTModel's code does not change. Generation (with a KV cache) and
    evaluation without gradients call the block directly: there is nothing to save there.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x, kv_cache=None, layer=0):
        if kv_cache is None and torch.is_grad_enabled():
            return checkpoint(self.block, x, use_reentrant=False)
        return self.block(x, kv_cache, layer)


def apply_activation_checkpointing(model: nn.Module, every: int = 1) -> nn.Module:
    """Wrap every `every`-th transformer block of `model` (blocks 0, every, 2*every, ...) in CheckpointedBlock.

    Changes `model` in place and returns it; the wrapped blocks' state_dict keys gain a ".block".
    """
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r}: checkpoint every n-th block, with n a whole number of at least 1.")
    blocks = model.trf_blocks
    for i in range(0, len(blocks), every):
        if not isinstance(blocks[i], CheckpointedBlock):
            blocks[i] = CheckpointedBlock(blocks[i])
    return model


# -- inference -------------------------------------------------------------------------------------

def kv_cache_bytes(cfg: dict, num_tokens: int, batch_size: int = 1, bytes_per_value: int = 2) -> int:
    """Bytes of a key-value cache holding `num_tokens` tokens for each of `batch_size` sequences.

    Every layer stores a key and a value vector per key/value head: `n_kv_groups` heads in grouped-
    query attention (chapter 12), `n_heads` in multi-head attention (a `GPTModel` config), each of
    `head_dim` (default `emb_dim / n_heads`) numbers of `bytes_per_value` bytes (2 for bf16).
    """
    for name, value in (("num_tokens", num_tokens), ("batch_size", batch_size), ("bytes_per_value", bytes_per_value)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: it must be a whole number of at least 1.")
    kv_heads = cfg.get("n_kv_groups", cfg["n_heads"])
    head_dim = cfg.get("head_dim") or cfg["emb_dim"] // cfg["n_heads"]
    return 2 * cfg["n_layers"] * kv_heads * head_dim * bytes_per_value * num_tokens * batch_size
