"""Appendix A's DistributedDataParallel script, run as the notebook runs it: two CPU processes under torchrun."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "chapters" / "appA_pytorch"
SCRIPT = FOLDER / "ddp_train.py"


@pytest.fixture(scope="module")
def ddp_run() -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


def seen_by_rank(stdout: str) -> dict[int, list[int]]:
    seen = {}
    for line in stdout.splitlines():
        if "epoch 1 trained on examples" in line:
            rank = int(line.split("]")[0].removeprefix("[rank "))
            seen[rank] = ast.literal_eval(line.split("examples ")[1])
    return seen


def test_two_processes_train_the_toy_network_to_full_accuracy(ddp_run) -> None:
    assert ddp_run.returncode == 0, ddp_run.stderr
    lines = ddp_run.stdout.splitlines()
    assert lines[0] == "Training on 2 processes, backend gloo"
    losses = [float(line.split("train loss ")[1]) for line in lines if "train loss" in line]
    assert len(losses) == 3 and losses[-1] < losses[0] / 5, f"the loss should fall over the 3 epochs: {losses}"
    assert "Train accuracy 1.00" in lines and "Test accuracy 1.00" in lines


def test_the_sampler_splits_the_examples_between_the_ranks(ddp_run) -> None:
    seen = seen_by_rank(ddp_run.stdout)
    assert sorted(seen) == [0, 1], f"both ranks should report what they saw:\n{ddp_run.stdout}"
    assert len(seen[0]) == len(seen[1]) == 3  # 5 examples padded to 6, 3 per rank
    assert set(seen[0]) | set(seen[1]) == set(range(5))
    # Apart from the one example the sampler repeats to even out the shares, the halves are disjoint.
    shared = set(seen[0]) & set(seen[1])
    assert len(shared) == 1, f"the ranks share {sorted(shared)}; only the padding example should repeat"


def test_rank_lines_come_in_rank_order_before_the_losses(ddp_run) -> None:
    lines = ddp_run.stdout.splitlines()
    assert lines[1].startswith("[rank 0]") and lines[2].startswith("[rank 1]") and lines[3].startswith("Epoch 01")


def test_started_without_torchrun_it_says_how_to_launch_it() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode != 0
    assert "torchrun --standalone --nproc_per_node=2 chapters/appA_pytorch/ddp_train.py" in run.stderr


def class_source(source: str, name: str) -> str:
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return "\n".join(source.splitlines()[node.lineno - 1 : node.end_lineno])


def test_the_script_trains_the_network_the_notebook_builds() -> None:
    notebook = json.loads((FOLDER / "appA.ipynb").read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    defining = [cell for cell in cells if cell.startswith("class NeuralNetwork(")]
    assert len(defining) == 1, "the notebook should define NeuralNetwork in one cell"
    script = SCRIPT.read_text(encoding="utf-8")
    assert class_source(defining[0], "NeuralNetwork") == class_source(script, "NeuralNetwork"), (
        "NeuralNetwork in appA.ipynb and in ddp_train.py differ: copy one onto the other"
    )
