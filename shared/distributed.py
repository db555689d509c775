"""Training across processes with PyTorch's own engine: `torch.distributed`, launched by `torchrun`.

`torchrun --nproc_per_node=N script.py` starts N copies of a script and tells each its place in
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, and where to meet). The helpers here turn the
appendix-D loop into a distributed one without touching the model code:

- `setup()` joins the process group (gloo on CPU, nccl on CUDA GPUs, one GPU per LOCAL_RANK);
- `wrap_model(model, "ddp")` keeps a full copy of the model on every process and averages the
  gradients after each backward pass (DistributedDataParallel); `wrap_model(model, "fsdp")` shards
  every parameter, its gradient and its optimizer state across the processes (`fully_shard`, the
  "ZeRO stage 3" idea) and gathers each block's weights only while it computes;
- `print0`, `all_reduce_mean` and `broadcast_int` for logging on one process, averaging a loss for
  the log, and making every process take the same decision (e.g. the step count of a timed run);
- `full_state_dicts` / `load_full_state_dicts` gather a whole, unsharded state for a checkpoint
  that a single process can load, and spread one back over the shards for resuming;
- `memory_held` counts the bytes of parameters, gradients and optimizer state a process holds;
- `shutdown()` waits for every process, leaves the group and lets gloo's worker threads finish.

Every collective waits at most `timeout_s` (default 300 s, or the LLM_DIST_TIMEOUT environment
variable), so a process that is stuck or gone makes the others fail with an error instead of
hanging; torchrun then stops the whole run with a non-zero exit status.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

STRATEGIES = ("ddp", "fsdp")
DEFAULT_TIMEOUT_S = 300.0


@dataclass
class DistEnv:
    """This process's place in the run: its rank among `world_size` processes and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher that sets RANK and WORLD_SIZE) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """The number of processes: from the process group once joined, else from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def setup(device_type: str = "cpu", timeout_s: float | None = None) -> DistEnv:
    """Join the process group torchrun prepared: gloo on CPU, nccl on CUDA with one GPU per LOCAL_RANK."""
    if not launched_by_torchrun():
        raise RuntimeError("setup() needs the environment torchrun sets (RANK, WORLD_SIZE, ...): launch with "
                           "`torchrun --nproc_per_node=2 ...`, or train in one process without it.")
    if timeout_s is None:
        timeout_s = float(os.environ.get("LLM_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s}: collectives need a positive timeout, e.g. 300 seconds.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                               "GPU(s): lower --nproc_per_node to the number of GPUs.")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device_type == "cpu":
        device, backend = torch.device("cpu"), "gloo"
    else:
        raise ValueError(f"distributed training supports cpu (gloo) and cuda (nccl), not {device_type!r}.")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistEnv(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(), device=device)


def wrap_model(model: nn.Module, strategy: str, device: torch.device) -> nn.Module:
    """The model to train with: DDP's wrapper around it, or the model itself, sharded in place (FSDP).

    For "ddp", keep using the unwrapped `model` for evaluation and checkpoints (its state dict has
    the plain names) and the returned wrapper for training steps. For "fsdp", each transformer block
    is its own shard group (its weights are gathered just before it runs and freed after), then the
    rest of the model; create the optimizer after this call, on the sharded parameters.
    """
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "trf_blocks", []):
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}.")


def print0(*args, **kwargs) -> None:
    """`print` on rank 0 only, so N processes do not print every line N times."""
    if rank() == 0:
        print(*args, **kwargs)


def all_reduce_mean(value: float, device: torch.device | str = "cpu") -> float:
    """The mean of `value` over all processes (e.g. each rank's loss on its own batches, for the log)."""
    if world_size() == 1:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.item() / dist.get_world_size()


def broadcast_int(value: int, device: torch.device | str = "cpu", src: int = 0) -> int:
    """Rank `src`'s `value` on every rank: one decision (say, a step count from timing) that all follow."""
    if world_size() == 1:
        return int(value)
    tensor = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=src)
    return int(tensor.item())


def _full_options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_state_dicts(model: nn.Module, optimizer) -> tuple[dict, dict]:
    """The whole model and optimizer state on rank 0's CPU, in single-process form (other ranks get {}).

    Call it on every rank: under FSDP each rank contributes its shards. The optimizer state comes
    back indexed 0, 1, 2, ... in parameter-group order, as `optimizer.state_dict()` gives it in one
    process, so `shared.checkpoint` saves it and a single process can resume from it.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    options = _full_options(cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    by_name = get_optimizer_state_dict(model, optimizer, options=options)
    if not by_name:
        return model_state, {}
    order = [name for group in by_name["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(order)}
    optimizer_state = {"state": {index[name]: s for name, s in by_name["state"].items()},
                       "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                                        for g in by_name["param_groups"]]}
    return model_state, optimizer_state


def load_full_state_dicts(model: nn.Module, optimizer, model_state: dict, optimizer_state: dict) -> None:
    """Load a single-process state (weights, and optimizer state indexed 0, 1, 2, ...) into a sharded model.

    Each rank keeps its own part of every tensor. Call on every rank, each with the same state.
    """
    from torch.distributed.checkpoint import state_dict as dcp

    dcp.set_model_state_dict(model, model_state, options=_full_options())
    groups = dcp.get_optimizer_state_dict(model, optimizer)["param_groups"]
    names = [name for group in groups for name in group["params"]]
    if len(names) != sum(len(g["params"]) for g in optimizer_state["param_groups"]):
        raise ValueError("the saved optimizer state does not match this model's parameters: resume with the "
                         "optimizer and model settings the run was saved with.")
    by_name = {"state": {names[int(i)]: s for i, s in optimizer_state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]}
                                for g in optimizer_state["param_groups"]]}
    dcp.set_optimizer_state_dict(model, optimizer, optim_state_dict=by_name, options=_full_options())


def local_bytes(tensors) -> int:
    """Bytes of the tensors this process actually holds (a sharded DTensor counts its local shard only)."""
    total = 0
    for tensor in tensors:
        if tensor is None:
            continue
        if hasattr(tensor, "to_local"):
            tensor = tensor.to_local()
        total += tensor.numel() * tensor.element_size()
    return total


def memory_held(model: nn.Module, optimizer) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state held by this process."""
    params = list(model.parameters())
    optimizer_tensors = [value for state in optimizer.state_dict()["state"].values() for value in state.values()
                         if isinstance(value, torch.Tensor)]
    return {"parameters": local_bytes(params), "gradients": local_bytes(p.grad for p in params),
            "optimizer": local_bytes(optimizer_tensors)}


_GLOO_WORKER_THREAD = "pt_gloo_runloop"  # the name PyTorch gives the threads that run gloo's collectives


def _gloo_worker_states() -> list[str] | None:
    """The scheduler state of each gloo worker thread of this process ("R" runnable, "S" asleep, ...).

    Read from /proc (Linux); None where there is no /proc to read.
    """
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return None
    states = []
    for thread in threads:
        try:
            with open(f"/proc/self/task/{thread}/stat", encoding="utf-8", errors="replace") as file:
                stat = file.read()  # "tid (name) state ..."
        except OSError:  # the thread has just ended
            continue
        if stat[stat.find("(") + 1 : stat.rfind(")")] == _GLOO_WORKER_THREAD:
            states.append(stat[stat.rfind(")") + 2 : stat.rfind(")") + 3])
    return states


def _let_gloo_workers_finish(timeout_s: float = 2.0, quiet_checks: int = 3, pause_s: float = 0.01) -> None:
    """Wait, with the GIL released, until no gloo worker thread has anything left to run (at most `timeout_s`).

    A collective returns as soon as its result is ready; the gloo worker thread that ran it frees the
    work, and with it the work's tensors, a moment later (a barrier's work even holds on to the
    collective before it). Freeing a tensor that also has a Python object takes the GIL, and Python
    3.11 ends a thread that asks for the GIL while the interpreter shuts down by unwinding it, through
    PyTorch's C++ destructors, which aborts the process ("terminate called without an active
    exception", SIGABRT). destroy_process_group() does not stop these threads while anything still
    holds the group (after DistributedDataParallel something does, even once the wrapper is freed;
    under FSDP, DTensor's caches do), so a process that exits right after its last collective loses
    this race now and then on a busy machine. Here the threads get the CPU and the GIL until
    `quiet_checks` checks in a row find none of them runnable; without /proc, a fixed pause.
    """
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while quiet < quiet_checks and time.monotonic() < deadline:
        time.sleep(pause_s)  # gives up the GIL and the CPU to a worker that still needs them
        states = _gloo_worker_states()
        if states is None:
            time.sleep(0.2)
            return
        quiet = 0 if "R" in states else quiet + 1


def shutdown() -> None:
    """Wait for every process, leave the group, let gloo's threads finish and flush the output.

    Call it once, at the end of a run that went well. After an error, do not: another process may still
    be inside a collective with this one; let the error end the process, and torchrun ends the others.
    """
    try:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no process leaves while another still needs it for a collective
            dist.destroy_process_group()
            _let_gloo_workers_finish()  # see there: a gloo thread still busy as Python exits aborts the process
    finally:
        sys.stdout.flush()  # what was printed reaches the log even if teardown goes wrong
        sys.stderr.flush()
