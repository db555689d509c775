"""Training across 2 CPU processes (gloo) with `shared.distributed` and `torchrun -m shared.train`.

Each test launches `torchrun --standalone` (it picks a free port, so parallel runs do not collide),
always under a timeout so nothing can hang. The workers are this file itself, run as a script:
`python tests/test_distributed.py SCENARIO OUT_DIR`. Starting a process costs seconds (importing
torch), so one launch checks several things.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # when run as a worker script
    sys.path.insert(0, str(ROOT))

from shared.corpus import load_novel  # noqa: E402
from shared.optimizers import make_optimizer  # noqa: E402
from shared.pretraining import train_step  # noqa: E402
from shared.transformer import GPTModel  # noqa: E402

CFG = {"vocab_size": 64, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2, "drop_rate": 0.0,
       "qkv_bias": False}
STEPS = 4
TIMEOUT_S = 120


def fixed_batch(step: int, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of `step`: `size` random sequences (rank r takes its half of them)."""
    generator = torch.Generator().manual_seed(100 + step)
    ids = torch.randint(0, CFG["vocab_size"], (size, CFG["context_length"] + 1), generator=generator)
    return ids[:, :-1], ids[:, 1:]


def torchrun(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", **(env or {})})


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


# -- the workers (run by torchrun, 2 processes) -------------------------------------------------------


def train_steps(model, training_model, optimizer, rank: int) -> list[float]:
    """STEPS AdamW steps on one global batch, each rank on its half of it; the mean loss of each step."""
    from shared.distributed import all_reduce_mean

    losses = []
    x, y = fixed_batch(1)
    for _ in range(STEPS):
        half = slice(2 * rank, 2 * rank + 2)
        loss, _ = train_step(training_model, [(x[half], y[half])], optimizer, torch.device("cpu"))
        losses.append(all_reduce_mean(loss))
    return losses


def engine_worker(out: Path) -> None:
    """DDP, then FSDP, on the same model and batches; rank 0 saves what the test compares."""
    from shared.distributed import broadcast_int, full_state_dicts, memory_held, print0, setup, shutdown, wrap_model

    env = setup("cpu")
    device = env.device
    torch.manual_seed(0)
    model = GPTModel(CFG)
    ddp = wrap_model(model, "ddp", device)
    optimizer = make_optimizer(model, "adamw", lr=1e-2, weight_decay=0.1, device=device)
    x, y = fixed_batch(0)
    half = slice(2 * env.rank, 2 * env.rank + 2)
    train_step(ddp, [(x[half], y[half])], optimizer, device)
    first_step = {"grads": {n: p.grad.clone() for n, p in model.named_parameters()},
                  "weights": {n: t.clone() for n, t in model.state_dict().items()}}
    ddp_losses = train_steps(model, ddp, optimizer, env.rank)
    ddp_memory = memory_held(model, optimizer)
    ddp_state = {n: t.clone() for n, t in model.state_dict().items()}

    torch.manual_seed(0)
    sharded = wrap_model(GPTModel(CFG), "fsdp", device)
    sharded_optimizer = make_optimizer(sharded, "adamw", lr=1e-2, weight_decay=0.1, device=device)
    train_step(sharded, [(x[half], y[half])], sharded_optimizer, device)  # the same first step as DDP's
    fsdp_losses = train_steps(sharded, sharded, sharded_optimizer, env.rank)
    fsdp_memory = memory_held(sharded, sharded_optimizer)
    full_model, full_optimizer = full_state_dicts(sharded, sharded_optimizer)

    result = {"ddp_losses": ddp_losses, "fsdp_losses": fsdp_losses, "ddp_memory": ddp_memory,
              "fsdp_memory": fsdp_memory, "broadcast": broadcast_int(10 + env.rank), "world_size": env.world_size}
    (out / f"rank{env.rank}.json").write_text(json.dumps(result))
    if env.is_main:
        torch.save({**first_step, "ddp_state": ddp_state, "fsdp_full_state": full_model,
                    "fsdp_full_optimizer": full_optimizer}, out / "rank0.pt")
    print0("engine done")
    shutdown()


def failing_worker(out: Path) -> None:
    """Rank 1 raises before the first all-reduce; rank 0 waits in it."""
    from shared.distributed import all_reduce_mean, setup, shutdown

    env = setup("cpu")
    if env.rank == 1:
        raise RuntimeError("rank 1 failed on purpose")
    all_reduce_mean(1.0)
    shutdown()


def stuck_worker(out: Path) -> None:
    """Rank 1 never joins the all-reduce (it sleeps); rank 0 must give up after its timeout, not hang."""
    from shared.distributed import all_reduce_mean, setup

    env = setup("cpu")
    if env.rank == 1:
        time.sleep(TIMEOUT_S)
    all_reduce_mean(1.0)


# -- the tests ------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("engine")
    check(torchrun(__file__, "engine", str(out)))
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return {"ranks": ranks, "rank0": torch.load(out / "rank0.pt")}


def test_one_ddp_step_equals_one_step_on_the_whole_batch(engine):
    torch.manual_seed(0)
    model = GPTModel(CFG)
    optimizer = make_optimizer(model, "adamw", lr=1e-2, weight_decay=0.1, device=torch.device("cpu"))
    train_step(model, [fixed_batch(0)], optimizer, torch.device("cpu"))  # all 4 sequences in one process
    saved = engine["rank0"]
    for name, param in model.named_parameters():
        torch.testing.assert_close(saved["grads"][name], param.grad, rtol=1e-5, atol=1e-6, msg=name)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(saved["weights"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_fsdp_trains_like_ddp_and_its_full_state_matches(engine):
    ddp, fsdp = engine["ranks"][0]["ddp_losses"], engine["ranks"][0]["fsdp_losses"]
    assert len(ddp) == STEPS and ddp[-1] < ddp[0]  # it learns
    assert fsdp == pytest.approx(ddp, rel=1e-5)
    assert engine["ranks"][1]["fsdp_losses"] == engine["ranks"][0]["fsdp_losses"]  # every rank logs the mean
    saved = engine["rank0"]
    assert saved["fsdp_full_state"].keys() == saved["ddp_state"].keys()
    for name, tensor in saved["ddp_state"].items():  # the gathered FSDP weights are whole and trained alike
        torch.testing.assert_close(saved["fsdp_full_state"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    optimizer_state = saved["fsdp_full_optimizer"]
    n_params = len(saved["ddp_state"])
    assert sorted(optimizer_state["state"]) == list(range(n_params))  # indexed like a one-process optimizer
    assert optimizer_state["state"][0]["exp_avg"].shape == saved["ddp_state"]["tok_emb.weight"].shape


def test_sharding_halves_what_each_rank_holds(engine):
    for result in engine["ranks"]:
        ddp, fsdp = result["ddp_memory"], result["fsdp_memory"]
        for kind in ("parameters", "gradients", "optimizer"):
            assert 0.4 < fsdp[kind] / ddp[kind] < 0.6, (kind, fsdp[kind], ddp[kind])
        # AdamW keeps two moments per parameter: twice the parameters' bytes (plus a step count per tensor).
        assert 2 * ddp["parameters"] <= ddp["optimizer"] < 2.1 * ddp["parameters"]


def test_collectives_agree_across_ranks(engine):
    assert [r["broadcast"] for r in engine["ranks"]] == [10, 10]  # rank 0's value everywhere
    assert [r["world_size"] for r in engine["ranks"]] == [2, 2]


def test_a_failing_or_stuck_rank_ends_the_run_with_an_error(tmp_path):
    started = time.perf_counter()
    launches = {}
    for scenario in ("fail", "stuck"):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
                   scenario, str(tmp_path)]
        launches[scenario] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              text=True, env={**os.environ, "LLM_DIST_TIMEOUT": "3",
                                                              "OMP_NUM_THREADS": "1"})
    outputs = {name: process.communicate(timeout=TIMEOUT_S)[0] for name, process in launches.items()}
    assert time.perf_counter() - started < 60  # well before the stuck rank's sleep would end
    assert launches["fail"].returncode != 0 and "rank 1 failed on purpose" in outputs["fail"]
    assert launches["stuck"].returncode != 0
    assert "timed out" in outputs["stuck"].lower() or "timeout" in outputs["stuck"].lower(), outputs["stuck"]


# -- the training command -------------------------------------------------------------------------------

TINY = ["--tokenizer", "300", "--n-layers", "1", "--emb-dim", "32", "--n-heads", "2", "--context-length", "32",
        "--batch-size", "4", "--eval-every", "3", "--eval-windows", "4", "--warmup-steps", "2", "--no-progress",
        "--optimizer", "adamw", "--max-steps", "6"]


def train_in_this_process(args: list[str], capsys) -> str:
    """`python -m shared.train ARGS` run here (starting another process would cost seconds); its output."""
    from shared.train import main

    capsys.readouterr()
    main(args)
    return capsys.readouterr().out


def history(out: Path) -> list[tuple[int, float, float]]:
    from shared.checkpoint import read_checkpoint

    extra = json.loads(read_checkpoint(out / "checkpoint.safetensors")[1]["extra"])
    return [(h["step"], h["train_loss"], h["val_loss"]) for h in extra["history"]]


def test_the_training_command_across_processes_saves_resumes_and_loads_in_one_process(tmp_path, capsys):
    data = tmp_path / "emma.txt"
    data.write_text(load_novel("emma")[:40_000], encoding="utf-8")
    options = ["--data", str(data), *TINY]
    common = ["-m", "shared.train", *options]
    # 2 processes, DDP (the default under torchrun), stopped half way...
    first = check(torchrun(*common, "--out", str(tmp_path / "two"), "--stop-at", "3"))
    assert first.stdout.count("stopped at step 3") == 1  # rank 0 alone prints
    assert "ddp across 2 processes" in first.stdout and "2 x 4 = 8 sequences" in first.stdout
    shutil.copytree(tmp_path / "two", tmp_path / "one")
    # ...resumed by 2 processes under FSDP, and by a single process.
    check(torchrun(*common, "--out", str(tmp_path / "two"), "--distributed", "fsdp", "--resume"))
    single = train_in_this_process([*options, "--out", str(tmp_path / "one"), "--resume"], capsys)
    assert "saved by 2 process(es), now 1" in single
    assert [s for s, *_ in history(tmp_path / "one")] == [3, 6]
    # 2 processes with 1 micro-batch each draw the batches of 1 process with 2: the same training.
    train_in_this_process([*options, "--out", str(tmp_path / "reference"), "--accumulation-steps", "2"], capsys)
    reference, distributed = history(tmp_path / "reference"), history(tmp_path / "two")
    assert [s for s, *_ in distributed] == [3, 6]
    for (step, train, val), (ref_step, ref_train, ref_val) in zip(distributed, reference, strict=True):
        assert step == ref_step and train == pytest.approx(ref_train, abs=1e-4) and val == pytest.approx(ref_val,
                                                                                                       abs=1e-4)
    # The FSDP run's checkpoint holds whole tensors: a single process generates from it.
    from shared.chat import continue_text
    from shared.pretrained import load_trained_model

    model, tokenizer = load_trained_model(str(tmp_path / "two" / "checkpoint.safetensors"))
    assert model.tok_emb.weight.shape[1] == 32 and not any(hasattr(p, "to_local") for p in model.parameters())
    text = continue_text(model, tokenizer, "Emma", max_new_tokens=5, temperature=0.0, top_k=None, top_p=None,
                         device="cpu")
    assert len(tokenizer.encode(text)) >= 1


def test_fsdp_with_muon_and_distributed_without_torchrun_are_refused(monkeypatch, capsys):
    from shared.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--distributed", "ddp"])
    assert "launch with `torchrun" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parse_args([]).distributed == "ddp"  # the default under a multi-process launch
    with pytest.raises(SystemExit):
        parse_args(["--distributed", "fsdp"])  # Muon is the default optimizer
    assert "use --optimizer adamw" in capsys.readouterr().err
    assert parse_args(["--distributed", "fsdp", "--optimizer", "adamw"]).distributed == "fsdp"


if __name__ == "__main__":
    scenario, out_dir = sys.argv[1], Path(sys.argv[2])
    {"engine": engine_worker, "fail": failing_worker, "stuck": stuck_worker}[scenario](out_dir)
