"""One process vs 2-process DDP vs 2-process FSDP: tokens/s and what each process holds in memory.

The same model (the training command's default: 4 layers, 128 wide, context 128, 4,096-token
vocabulary), the same global batch and AdamW are trained for a few steps on random token ids, in
three set-ups launched as fresh processes:

1. one process using every core (`torch.set_num_threads(cores)`), and one using a single thread;
2. `torchrun --nproc_per_node=2` with DistributedDataParallel: each process a full copy, half the
   batch, cores / 2 threads, gradients averaged over gloo (CPU) or nccl (CUDA);
3. the same with `fully_shard` (FSDP): parameters, gradients and AdamW's state split in two.

Reported per process: peak resident memory (`resource.getrusage`, the whole process: Python, torch,
activations) and the bytes of parameters, gradients and optimizer state it holds (its shards only).
On a CPU, two processes share the same cores that one process would use with two threads, so they
cannot be faster: the table shows what the communication costs, and how much memory sharding
saves. On GPUs (one per process) the same code scales the throughput instead.

Run from the repository root (about a minute on 2 cores):
    python benchmarks/bench_distributed.py [--steps 20] [--batch-size 16] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CFG = {"vocab_size": 4096, "context_length": 128, "emb_dim": 128, "n_heads": 4, "n_layers": 4, "drop_rate": 0.0,
       "qkv_bias": False}
MIB = 2**20


def worker(args: argparse.Namespace) -> None:
    """Train `args.steps` timed steps (after `args.warmup` untimed ones) and write this process's numbers."""
    import torch

    from shared import distributed
    from shared.optimizers import make_optimizer
    from shared.pretraining import train_step
    from shared.transformer import GPTModel

    strategy = args.mode if args.mode in distributed.STRATEGIES else None
    device = torch.device(args.device)
    if strategy:
        device = distributed.setup(args.device).device
    rank, world = distributed.rank(), distributed.world_size()
    torch.set_num_threads(args.threads)
    torch.manual_seed(123)
    model = GPTModel(CFG).to(device)
    training_model = model
    if strategy:
        training_model = distributed.wrap_model(model, strategy, device)
    optimizer = make_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1, device=device)
    per_process = args.batch_size // world
    generator = torch.Generator().manual_seed(rank)

    def batch():
        ids = torch.randint(0, CFG["vocab_size"], (per_process, CFG["context_length"] + 1), generator=generator)
        return ids[:, :-1].to(device), ids[:, 1:].to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        train_step(training_model, [batch()], optimizer, device, max_norm=1.0)
    sync()
    started = time.perf_counter()
    for _ in range(args.steps):
        train_step(training_model, [batch()], optimizer, device, max_norm=1.0)
    sync()
    seconds = time.perf_counter() - started
    result = {"rank": rank, "seconds": seconds, "tokens": args.steps * args.batch_size * CFG["context_length"],
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
              **{k: v / MIB for k, v in distributed.memory_held(model, optimizer).items()}}
    if device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / MIB
    Path(args.out, f"{args.mode}-rank{rank}.json").write_text(json.dumps(result))
    if strategy:
        distributed.shutdown()


def launch(mode: str, processes: int, threads: int, args: argparse.Namespace, out: str) -> list[dict]:
    """Run one set-up in fresh processes; the list of each process's numbers."""
    worker_args = [__file__, "--worker", mode, "--out", out, "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--batch-size", str(args.batch_size), "--threads", str(threads), "--device", args.device]
    if processes == 1:
        command = [sys.executable, *worker_args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   *worker_args]
    print(f"running {mode} ({processes} process(es), {threads} thread(s) each) ...", file=sys.stderr)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if result.returncode != 0:
        raise SystemExit(f"{mode} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return [json.loads(Path(out, f"{mode}-rank{r}.json").read_text()) for r in range(processes)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per set-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocations, kernels)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch: split between the processes")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.mode = args.worker
        worker(args)
        return
    if args.batch_size % 2:
        p.error("--batch-size must be even, so that 2 processes split it equally.")
    import torch

    cores = os.cpu_count() or 1
    two_processes = args.device == "cpu" or torch.cuda.device_count() >= 2
    setups = [("single", 1, cores if args.device == "cpu" else 1)]
    if args.device == "cpu" and cores > 1:
        setups.append(("single-1-thread", 1, 1))  # what each of the 2 processes below gets
    if two_processes:
        setups += [("ddp", 2, max(cores // 2, 1)), ("fsdp", 2, max(cores // 2, 1))]
    with tempfile.TemporaryDirectory() as out:
        results = {mode: (processes, threads, launch(mode, processes, threads, args, out))
                   for mode, processes, threads in setups}

    def tokens_per_s(ranks):
        return ranks[0]["tokens"] / max(r["seconds"] for r in ranks)

    def mean(ranks, key):
        return sum(r[key] for r in ranks) / len(ranks)

    base = results["single"][2]
    print(f"{datetime.date.today()}, {platform.machine()}, {cores} cores, torch {torch.__version__}, device "
          f"{args.device}; {args.steps} steps of a global batch of {args.batch_size} x {CFG['context_length']} "
          f"tokens, AdamW, fp32. Per process: mean over the processes; ratios to the 1-process run.\n")
    print("| set-up | processes x threads | tokens/s | vs 1 process | peak RSS per process (MiB) "
          "| parameters (MiB) | gradients (MiB) | AdamW state (MiB) | params + grads + state vs 1 process |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    held_base = sum(mean(base, k) for k in ("parameters", "gradients", "optimizer"))
    for mode, (processes, threads, ranks) in results.items():
        held = sum(mean(ranks, k) for k in ("parameters", "gradients", "optimizer"))
        label = {"single": "1 process", "single-1-thread": "1 process, 1 thread", "ddp": "DDP",
                 "fsdp": "FSDP (fully_shard)"}[mode]
        print(f"| {label} | {processes} x {threads} | {tokens_per_s(ranks):,.0f} | "
              f"{tokens_per_s(ranks) / tokens_per_s(base):.2f} | {mean(ranks, 'peak_rss_mib'):,.0f} | "
              f"{mean(ranks, 'parameters'):.1f} | {mean(ranks, 'gradients'):.1f} | {mean(ranks, 'optimizer'):.1f} | "
              f"{held / held_base:.2f} |")
    if not two_processes:
        print("\n(2-process rows need 2 GPUs; this machine has fewer.)")


if __name__ == "__main__":
    main()
