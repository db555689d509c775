"""Check that your GPU trains like the CPU: `python -m shared.device_check [--device auto|cuda|cuda:1|mps]`.

Trains a tiny GPT (2 layers, 64 wide) for a few AdamW steps on the CPU and on the device, from the same
weights and batch, prints each step's two losses and says whether they agree. Wrong losses on Apple GPUs
(MPS) are the most common device problem readers meet; this finds them in a second. Both runs are float32
with TF32 off (restored afterwards), where rounding moves the losses by about 1e-6 (the CPU's float32
against float64), so the default --tolerance of 1e-3 leaves a correct GPU a wide margin. Exit status: 0
when the losses agree (or there is no GPU to compare), 1 when they do not or training on the device fails,
2 for a bad argument.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys

import torch

from shared.devices import DEFAULT_TOLERANCE, DeviceComparison, compare_training_on_devices, pick_device
from shared.transformer import GPTModel

TINY_GPT_CONFIG = {"vocab_size": 256, "context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 2,
                   "drop_rate": 0.0, "qkv_bias": False}
BATCH_SIZE = 4


def check_device(device: torch.device | str = "auto", *, steps: int = 8, tolerance: float = DEFAULT_TOLERANCE,
                 seed: int = 0) -> DeviceComparison:
    """Train a tiny GPTModel on the CPU and on `device` (same weights, same random batch); compare the losses.

    The seed fixes the weights and the batch without touching the caller's random state. The CPU runs on one
    thread meanwhile (a tiny model gains nothing from more, and on a busy machine threads wait for each other).
    """
    device = pick_device(device) if isinstance(device, str) else device
    with torch.random.fork_rng(devices=[]):  # the CPU generator only: the caller's sequence is left as it was
        torch.manual_seed(seed)
        model = GPTModel(TINY_GPT_CONFIG)
        batch = torch.randint(TINY_GPT_CONFIG["vocab_size"], (BATCH_SIZE, TINY_GPT_CONFIG["context_length"] + 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return compare_training_on_devices(model, batch[:, :-1], batch[:, 1:], device, steps=steps,
                                           tolerance=tolerance)
    finally:
        torch.set_num_threads(threads)


def describe(device: torch.device) -> str:
    """The device's name with its hardware where PyTorch knows it, e.g. "cuda:0 (NVIDIA H100)"."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return f"mps (Apple GPU, macOS {platform.mac_ver()[0] or 'unknown'})"
    return str(device)


def advice(device: torch.device) -> str:
    """What to do when training on `device` gives wrong losses or fails."""
    lines = ["What to do:",
             "  - Train on the CPU meanwhile: python -m shared.train --device cpu (`auto` would pick this GPU);",
             "    the notebooks use the CPU already.",
             "  - Update PyTorch (pip install --upgrade torch), then run this check again."]
    if device.type == "mps":
        lines += ["  - Update macOS too: the MPS kernels ship with it.",
                  "  - If training stopped on an operation MPS does not implement, run",
                  "    PYTORCH_ENABLE_MPS_FALLBACK=1 python -m shared.device_check --device mps",
                  "    (such operations then run on the CPU), and train with the same setting."]
    if device.type == "cuda":
        lines += ["  - Update the NVIDIA driver (nvidia-smi shows its version)."]
    lines += ["  - If it persists, report it at https://github.com/pytorch/pytorch/issues with this output,",
              f"    your PyTorch version ({torch.__version__}) and what `python -m torch.utils.collect_env` prints."]
    return "\n".join(lines)


def report(result: DeviceComparison) -> str:
    """The table of losses per step and the verdict, with advice when the losses disagree."""
    device = result.device
    if device.type == "cpu":
        has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
        lines = ["No other device to compare: the device is the CPU, which is the reference.",
                 "This machine has a GPU: run with --device auto to check it." if has_gpu
                 else "PyTorch sees no GPU on this machine, so everything runs on the CPU.",
                 f"The CPU's losses over {len(result.cpu_losses)} AdamW steps of a tiny GPT (they should fall):",
                 f"{'step':>4}  {'loss on cpu':>12}"]
        lines += [f"{step:>4}  {loss:>12.6f}" for step, loss in enumerate(result.cpu_losses, start=1)]
        return "\n".join(lines)
    column = f"loss on {device.type}"
    lines = [f"Training a tiny GPT for {len(result.cpu_losses)} AdamW steps on cpu and on {describe(device)}, "
             f"PyTorch {torch.__version__}:",
             f"{'step':>4}  {'loss on cpu':>12}  {column:>12}  {'difference':>10}"]
    lines += [f"{step:>4}  {cpu:>12.6f}  {dev:>12.6f}  {diff:>10.1e}" for step, (cpu, dev, diff)
              in enumerate(zip(result.cpu_losses, result.device_losses, result.differences), start=1)]
    if result.agree:
        lines += [f"OK: the losses on {device} agree with the CPU's within {result.tolerance:g} at every step:",
                  "training on this device gives the CPU's results."]
        return "\n".join(lines)
    not_finite = [(step, cpu, dev) for step, (cpu, dev) in enumerate(zip(result.cpu_losses, result.device_losses), 1)
                  if not math.isfinite(dev)]
    if not_finite:
        step, cpu, dev = not_finite[0]
        lines.append(f"WRONG: the loss on {device} is {dev} at step {step}, where the CPU's is {cpu:.6f}:")
    else:
        lines.append(f"WRONG: the losses on {device} differ from the CPU's by up to {max(result.differences):.4g} "
                     f"(allowed: {result.tolerance:g}):")
    lines += [f"training on this device gives wrong results with PyTorch {torch.__version__}.", advice(device)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked (exits with a message naming the flag if a value is wrong)."""
    p = argparse.ArgumentParser(prog="python -m shared.device_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (the GPU if there is one), cuda, cuda:1, mps or cpu")
    p.add_argument("--steps", type=int, default=8, help="AdamW steps on each device")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="largest difference between the two losses of a step that still counts as agreeing")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps {args.steps}: train at least 1 step, e.g. --steps 8")
    if not (args.tolerance > 0 and math.isfinite(args.tolerance)):  # NaN fails both
        p.error(f"--tolerance {args.tolerance}: use a positive finite number, e.g. --tolerance {DEFAULT_TOLERANCE:g}")
    try:
        args.device = pick_device(args.device)
    except ValueError as err:
        p.error(f"--device {args.device}: {err}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Parse, check, report: the whole command (exit status 1 when the device's losses are wrong)."""
    args = parse_args(argv)
    try:
        result = check_device(args.device, steps=args.steps, tolerance=args.tolerance)
    except RuntimeError as err:  # NotImplementedError included: an operation the device lacks
        print(f"error: training on {describe(args.device)} failed: {err}\n{advice(args.device)}", file=sys.stderr)
        raise SystemExit(1) from None
    print(report(result))
    if not result.agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
