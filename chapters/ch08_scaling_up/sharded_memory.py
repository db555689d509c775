"""Train a small GPTModel with plain DDP and with FSDP on each process, and measure what each process holds.

Run with PyTorch's launcher, e.g. 2 processes on a CPU (gloo) or 2 GPUs (nccl):

    python -m torch.distributed.run --nproc_per_node=2 chapters/ch08_scaling_up/sharded_memory.py

Each strategy trains the same model (seed 123) for a few AdamW steps on a batch of random tokens (each
process its own); rank 0 then prints one JSON line per strategy, starting with "RESULT ": the mean loss of
each step and, for every rank, the bytes of parameters, gradients and optimizer state it holds, beside
the prediction of `shared.memory.estimate_memory`.
"""

import argparse
import datetime
import json
import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from shared.distributed import shutdown
from shared.memory import estimate_memory, measure_training_state
from shared.transformer import GPTModel

# Every parameter's first dimension is even, so 2 processes split each one exactly in half.
SMALL_CONFIG = {"vocab_size": 512, "context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 2,
                "drop_rate": 0.0, "qkv_bias": False}


def wrap(model: torch.nn.Module, strategy: str, device: torch.device) -> torch.nn.Module:
    """DDP keeps a full copy everywhere; fully_shard (per block, then the rest) keeps 1/world_size of each."""
    if strategy == "ddp":
        # gradient_as_bucket_view: the gradients live in DDP's communication buckets, not in a second copy
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       gradient_as_bucket_view=True)
    for block in model.trf_blocks:
        fully_shard(block)
    return fully_shard(model)


def run(strategy: str, steps: int, batch_size: int, device: torch.device) -> dict:
    """Train for `steps` steps with `strategy`; return the losses and this rank's measured bytes."""
    torch.manual_seed(123)  # the same initial weights on every rank
    model = wrap(GPTModel(SMALL_CONFIG).to(device), strategy, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    generator = torch.Generator().manual_seed(1000 + dist.get_rank())  # each rank its own batch
    tokens = torch.randint(0, SMALL_CONFIG["vocab_size"], (batch_size, SMALL_CONFIG["context_length"] + 1),
                           generator=generator).to(device)
    losses = []
    for _ in range(steps):  # the same batch each step: the loss falls as the model learns it by heart
        optimizer.zero_grad(set_to_none=True)
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)  # the loss of the global batch: the mean over the ranks
        losses.append(round(mean_loss.item() / dist.get_world_size(), 6))
    return {"losses": losses, "measured": measure_training_state(model, optimizer)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=["ddp", "fsdp"], choices=["ddp", "fsdp"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    if "LOCAL_RANK" not in os.environ:
        raise SystemExit("run me with torchrun (python -m torch.distributed.run --nproc_per_node=2 ...), "
                         "which starts the processes and tells each its rank.")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=60))
    world_size = dist.get_world_size()
    for strategy in args.strategies:
        result = run(strategy, args.steps, args.batch_size, device)
        per_rank = [None] * world_size
        dist.all_gather_object(per_rank, result["measured"])
        if dist.get_rank() == 0:
            estimate = estimate_memory(SMALL_CONFIG, strategy=strategy, world_size=world_size)
            print("RESULT " + json.dumps({
                "strategy": strategy, "world_size": world_size, "losses": result["losses"], "per_rank": per_rank,
                "estimate": {"parameters": estimate.parameters, "gradients": estimate.gradients,
                             "optimizer_state": estimate.optimizer_state},
            }), flush=True)
    shutdown()  # wait for the other ranks, leave the group, and let gloo's threads finish before Python exits


if __name__ == "__main__":
    main()
