"""Appendix A.9.3: train the appendix's toy network on several processes with DistributedDataParallel.

Launch it with PyTorch's launcher, which starts one process per device and tells each its rank:

    torchrun --standalone --nproc_per_node=2 chapters/appA_pytorch/ddp_train.py            # 2 CPU processes
    torchrun --standalone --nproc_per_node=$(nvidia-smi -L | wc -l) chapters/appA_pytorch/ddp_train.py  # all GPUs

Every process holds a full copy of the model and trains on its own share of the data (DistributedSampler
hands out the shares); after each backward pass DDP averages the gradients across the processes, so the
copies take identical steps and stay identical. On CPUs the processes talk through the gloo backend; with
one NVIDIA GPU per process they use nccl. `--standalone` lets torchrun pick a free port on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

# The appendix's toy data: two well-separated classes of 2-D points.
X_TRAIN = torch.tensor([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]])
Y_TRAIN = torch.tensor([0, 0, 0, 1, 1])
X_TEST = torch.tensor([[-0.8, 2.8], [2.6, -1.6]])
Y_TEST = torch.tensor([0, 1])


class ToyDataset(Dataset):
    """Feature rows and their class labels; item `index` also returns `index`, so a rank can report what it saw."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features = features
        self.labels = labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.features[index], self.labels[index], index

    def __len__(self) -> int:
        return self.labels.shape[0]


class NeuralNetwork(torch.nn.Module):
    """The appendix's multilayer perceptron: two hidden layers of 30 and 20 units with ReLU."""

    def __init__(self, num_inputs: int, num_outputs: int):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(num_inputs, 30),
            torch.nn.ReLU(),
            torch.nn.Linear(30, 20),
            torch.nn.ReLU(),
            torch.nn.Linear(20, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # logits: one score per class


def setup() -> tuple[int, int, torch.device]:
    """Join the process group torchrun set up; return (rank, world_size, this process's device)."""
    if "RANK" not in os.environ:
        sys.exit(
            "ddp_train.py runs as one of several processes and needs the launcher to tell it its rank. Start it with "
            "torchrun: torchrun --standalone --nproc_per_node=2 chapters/appA_pytorch/ddp_train.py"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world_size = int(os.environ["LOCAL_WORLD_SIZE"])
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_world_size:
        backend, device = "nccl", torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(device)
    else:
        backend, device = "gloo", torch.device("cpu")
    # A bounded timeout: if another process dies, this one stops with an error instead of waiting for ever.
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=60))
    return dist.get_rank(), dist.get_world_size(), device


def compute_accuracy(model: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor,
                     device: torch.device) -> float:
    """The fraction of examples whose highest logit is the right class."""
    model.eval()
    with torch.no_grad():
        predictions = model(features.to(device)).argmax(dim=-1)
    return (predictions == labels.to(device)).float().mean().item()


def print_in_rank_order(text: str, rank: int, world_size: int) -> None:
    """Each process prints `text`, rank 0 first: the barriers stop their lines from interleaving."""
    for turn in range(world_size):
        if turn == rank:
            print(text, flush=True)
        dist.barrier()


def main(num_epochs: int, lr: float, batch_size: int) -> None:
    rank, world_size, device = setup()
    torch.manual_seed(123)  # the same initial weights on every rank (DDP also copies rank 0's to the others)

    train_ds = ToyDataset(X_TRAIN, Y_TRAIN)
    sampler = DistributedSampler(train_ds, num_replicas=world_size, rank=rank, shuffle=True, seed=123)
    # The sampler shuffles and splits, so the loader itself must not shuffle.
    train_loader = DataLoader(train_ds, batch_size=batch_size, shuffle=False, sampler=sampler)

    model = NeuralNetwork(num_inputs=2, num_outputs=2).to(device)
    model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    if rank == 0:
        print(f"Training on {world_size} processes, backend {dist.get_backend()}", flush=True)
    for epoch in range(num_epochs):
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same one on every rank
        model.train()
        seen, loss_sum = [], torch.zeros(2, device=device)  # (summed loss, number of examples) on this rank
        for features, labels, indices in train_loader:
            features, labels = features.to(device), labels.to(device)
            loss = F.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()  # DDP averages the gradients of all ranks here
            optimizer.step()
            seen += indices.tolist()
            loss_sum += torch.stack([loss.detach() * len(labels), torch.tensor(float(len(labels)), device=device)])
        if epoch == 0:
            print_in_rank_order(f"[rank {rank}] epoch 1 trained on examples {sorted(seen)}", rank, world_size)
        dist.all_reduce(loss_sum)  # add up every rank's losses and counts
        if rank == 0:
            print(f"Epoch {epoch + 1:02d}/{num_epochs:02d} | train loss {(loss_sum[0] / loss_sum[1]).item():.4f}",
                  flush=True)

    if rank == 0:  # every rank holds the same weights now; one of them is enough to evaluate
        # model.module is the plain network inside the DDP wrapper: evaluating it needs no other rank.
        train_acc = compute_accuracy(model.module, X_TRAIN, Y_TRAIN, device)
        test_acc = compute_accuracy(model.module, X_TEST, Y_TEST, device)
        print(f"Train accuracy {train_acc:.2f}", flush=True)
        print(f"Test accuracy {test_acc:.2f}", flush=True)
    dist.barrier()  # let every rank finish before the group is torn down
    dist.destroy_process_group()
    time.sleep(0.2)  # let gloo's threads release the last tensors: one still at it as Python exits aborts the run


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Train the appendix A toy network with DistributedDataParallel.")
    parser.add_argument("--num-epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=2, help="examples per batch on each process")
    args = parser.parse_args()
    main(args.num_epochs, args.lr, args.batch_size)
