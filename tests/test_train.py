"""Training as a function (`train(TrainConfig(...))`), the training command (`python -m shared.train`) and the chat
command (`python -m shared.chat`), run as a reader runs them.

Each run trains a tiny model on a small slice of a novel, so the whole file takes seconds. Resuming
is checked in one process and across processes: losses must be identical, not merely close.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.checkpoint import load_checkpoint, read_checkpoint
from shared.corpus import build_corpus, load_novel
from shared.token_file import sample_batch
from shared.trainer import RECIPES, TrainConfig, TrainResult, train
from shared.transformer import GPTModel

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--tokenizer", "300", "--n-layers", "1", "--emb-dim", "32", "--n-heads", "2", "--context-length", "32",
        "--batch-size", "4", "--eval-every", "3", "--eval-windows", "4", "--warmup-steps", "2", "--no-progress"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "emma.txt"
    path.write_text(load_novel("emma")[:40_000], encoding="utf-8")
    return path


def saved_metadata(out: Path) -> dict[str, str]:
    return read_checkpoint(out / "checkpoint.safetensors")[1]


def history(out: Path) -> list[dict]:
    """The evaluations the run logged, as saved in its checkpoint."""
    return json.loads(saved_metadata(out)["extra"])["history"]


def tiny_config(text_file: Path, out: Path, **settings) -> TrainConfig:
    """TINY as a TrainConfig: what a notebook passes to train()."""
    return TrainConfig(**{"data": [str(text_file)], "tokenizer": "300", "n_layers": 1, "emb_dim": 32, "n_heads": 2,
                          "context_length": 32, "batch_size": 4, "eval_every": 3, "eval_windows": 4,
                          "warmup_steps": 2, "progress": False, "out": str(out), **settings})


def test_train_returns_the_run_and_resumes_exactly_in_one_process(tmp_path, text_file, one_thread):
    straight = train(tiny_config(text_file, tmp_path / "straight", max_steps=6))
    assert isinstance(straight, TrainResult) and straight.finished and straight.step == 6
    assert [h["step"] for h in straight.history] == [3, 6] and straight.history[-1]["train_loss"] > 0
    assert straight.val_bits_per_byte > 0 and straight.val_perplexity == pytest.approx(np.exp(straight.val_loss))
    assert straight.checkpoint == tmp_path / "straight" / "checkpoint.safetensors" and straight.checkpoint.is_file()
    assert straight.summary == json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert straight.summary["peak_memory_mib"] > 50  # the whole process's peak: torch alone is more
    assert 0 <= straight.summary["training_memory_mib"] < straight.summary["peak_memory_mib"]
    assert straight.sample.startswith("It is a truth universally acknowledged")

    halves = tiny_config(text_file, tmp_path / "halves", max_steps=6, stop_at=3)
    first = train(halves)
    assert not first.finished and first.step == 3 and first.val_loss is None
    resumed = train(TrainConfig(**{**vars(halves), "stop_at": None, "resume": True}))
    def losses(result):
        return [(h["step"], h["train_loss"], h["val_loss"]) for h in result.history]

    assert losses(resumed) == losses(straight)  # the same losses, bit for bit
    assert resumed.val_loss == straight.val_loss

    with pytest.raises(ValueError, match="--emb-dim: saved 32, now 64"):
        train(TrainConfig(**{**vars(halves), "emb_dim": 64, "resume": True}))
    with pytest.raises(FileExistsError, match="already exists"):
        train(halves)


@pytest.mark.parametrize("settings, message", [
    ({"batch_size": 0}, r"batch_size=0 \(--batch-size\) must be a whole number, at least 1"),
    ({"optimizer": "sgd"}, r"optimizer='sgd' \(--optimizer\) is not one of: adamw, muon"),
    ({"gpt2_size": "gpt3"}, r"gpt2_size='gpt3' \(--config\) is not one of: gpt2"),
    ({"val_fraction": 1.5}, r"val_fraction=1.5 \(--val-fraction\) must be between 0 and 1"),
    ({"val_novel": "ulysses"}, r"val_novel='ulysses' \(--val-novel\) is not one of the shipped novels"),
    ({"lr": -1.0}, r"lr=-1.0 \(--lr\) must be positive"),
    ({"drop_rate": 1.0}, r"drop_rate=1.0 \(--drop-rate\) must be in \[0, 1\)"),
    ({"schedule": "linear"}, r"schedule='linear' \(--schedule\) is not one of: cosine, constant"),
    ({"optimizer": "adamw", "muon_lr": 1e-2}, r"muon_lr=0.01 \(--muon-lr\) sets Muon's peak learning rate"),
])
def test_a_bad_setting_is_refused_when_the_config_is_made(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_the_config_fills_in_the_optimizers_recipe_and_the_model_sizes():
    config = TrainConfig(optimizer="adamw", n_layers=2, data="notes.txt")
    assert (config.lr, config.weight_decay, config.warmup_steps, config.muon_lr) == (3e-3, 0.1, 100, None)
    assert config.data == ["notes.txt"]
    assert config.model_config(vocab_size=300) == {"context_length": 128, "emb_dim": 128, "n_heads": 4,
                                                   "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False,
                                                   "vocab_size": 300}
    assert TrainConfig(gpt2_size="gpt2-medium").model_config(50257)["n_layers"] == 24
    with pytest.raises(TypeError, match="takes a TrainConfig"):
        train({"max_steps": 3})


def test_a_run_trains_reports_and_resumes_exactly_in_a_new_process(tmp_path, text_file):
    common = ["-m", "shared.train", "--data", str(text_file), *TINY, "--max-steps", "12", "--optimizer", "adamw"]
    straight = run(*common, "--out", str(tmp_path / "straight"))
    assert "bits per byte" in straight.stdout and "sample:" in straight.stdout
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["step"] == 12 and summary["val_bits_per_byte"] > 0

    first = run(*common, "--out", str(tmp_path / "halves"), "--stop-at", "6")
    assert "stopped at step 6" in first.stdout
    run(*common, "--out", str(tmp_path / "halves"), "--resume")
    losses = [(h["step"], h["train_loss"], h["val_loss"]) for h in history(tmp_path / "straight")]
    assert losses == [(h["step"], h["train_loss"], h["val_loss"]) for h in history(tmp_path / "halves")]
    assert [s for s, *_ in losses] == [3, 6, 9, 12]
    resumed = json.loads((tmp_path / "halves" / "summary.json").read_text())
    assert resumed["val_loss"] == summary["val_loss"]
    assert losses[-1][1] < losses[0][1]  # it learned something


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, text_file):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "shared.train", "--data", str(text_file), *TINY, "--max-steps", "100000",
            "--eval-every", "1", "--out", str(out)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # wait until training is under way
        if line.startswith("step"):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 130, rest
    assert "interrupted at step" in rest and "--resume" in rest
    model = GPTModel(json.loads(saved_metadata(out)["config"]))
    step = load_checkpoint(out / "checkpoint.safetensors", model).step
    assert step >= 1


def test_a_time_budget_plans_the_steps_and_refits_them_to_the_pace(tmp_path, text_file):
    result = run("-m", "shared.train", "--data", str(text_file), *TINY, "--minutes", "0.1", "--out", str(tmp_path))
    planned = [line for line in result.stdout.splitlines() if "ms per step" in line]
    assert "steps in 0.1 min" in planned[0] and "re-fitted every" in planned[0], result.stdout
    final_steps = int(planned[-1].rsplit("->", 1)[1].split()[0].replace(",", ""))
    summary = json.loads((tmp_path / "summary.json").read_text())
    # The last re-fitted count is the one the run trained. (On a busy machine the 6 s may hold few steps: the
    # simulated clocks below check that the run's end meets its budget.)
    assert summary["step"] == final_steps >= 1 and summary["wall_seconds"] > 0


class SimulatedMachine:
    """A clock that stands still except while a training step, a validation check or the final scoring
    runs; each costs what `step_seconds(now, steps_done)` says a training step costs at that moment (a
    forward pass, per token, a third of a training step's). It records each step's learning rate."""

    def __init__(self, step_seconds):
        self.now, self.steps_done, self.step_seconds = 0.0, 0, step_seconds
        self.lrs: dict[int, float] = {}  # by step; calibration's probes are overwritten by the real steps
        self.plans: dict[int, int] = {}  # the step count planned when each step ran

    def __call__(self) -> float:
        return self.now

    def forward_seconds_per_token(self, trainer) -> float:
        return self.step_seconds(self.now, self.steps_done) / trainer.tokens_per_step() / 3

    def install(self, monkeypatch) -> SimulatedMachine:
        import shared.trainer as trainer_module

        real_step, real_loss, real_score = (trainer_module.Trainer.one_step, trainer_module.loss_over_token_ids,
                                            trainer_module.evaluate_text)
        current = {}

        def one_step(trainer):
            current["trainer"] = trainer
            self.lrs[trainer.step], self.plans[trainer.step] = trainer.learning_rate(), trainer.total_steps
            loss = real_step(trainer)
            self.now += self.step_seconds(self.now, self.steps_done)
            self.steps_done += 1
            return loss

        def loss_over_token_ids(*args, **kwargs):
            nll, tokens = real_loss(*args, **kwargs)
            self.now += tokens * self.forward_seconds_per_token(current["trainer"])
            return nll, tokens

        def evaluate_text(*args, **kwargs):
            score = real_score(*args, **kwargs)
            self.now += score.num_tokens * self.forward_seconds_per_token(current["trainer"])
            return score

        monkeypatch.setattr(trainer_module.Trainer, "one_step", one_step)
        monkeypatch.setattr(trainer_module, "loss_over_token_ids", loss_over_token_ids)
        monkeypatch.setattr(trainer_module, "evaluate_text", evaluate_text)
        return self


def busy_then_idle(now: float, steps_done: int) -> float:
    return 1.2 if now < 20 else 0.4  # a machine busy for its first 20 s, then 3x faster


def idle_then_busy(now: float, steps_done: int) -> float:
    return 0.4 if now < 20 else 1.2


@pytest.mark.parametrize("machine", [busy_then_idle, idle_then_busy])
def test_a_time_budget_ends_on_time_with_a_smooth_schedule_whatever_the_machine_does(
        machine, tmp_path, text_file, one_thread, monkeypatch):
    """One simulated minute on a machine whose speed changes by 3x a third of the way in: the run, final
    scoring included, ends within 3% of its budget, and the learning rate never jumps when the plan changes."""
    sim = SimulatedMachine(machine).install(monkeypatch)
    config = tiny_config(text_file, tmp_path, minutes=1.0, eval_every=40, optimizer="adamw")
    result = train(config, clock=sim)
    assert result.finished and abs(sim.now - 60) <= 0.03 * 60, (sim.now, result.step)
    assert result.summary["wall_seconds"] == pytest.approx(sim.now)
    lrs = [sim.lrs[step] for step in range(result.step)]
    plans = [sim.plans[step] for step in range(result.step)]
    assert not 0.8 < min(plans) / max(plans)  # the plan changed a lot on the way
    warmup = config.warmup_steps
    assert max(lrs) == pytest.approx(config.lr) and lrs[-1] == pytest.approx(config.min_lr)
    # No jumps: from each step to the next the rate changes by at most about what a fresh cosine from the current
    # rate down to min_lr over the steps still planned would change it (4/pi of it at most, near the end).
    # Recomputing the whole cosine for each new step count instead would jump here by 2 to 10 times that.
    for step in range(warmup, result.step - 1):
        left = max(sim.plans[step] - 1 - step, 1)
        allowed = 1.3 * (lrs[step] - config.min_lr) * math.pi / 2 / left
        assert abs(lrs[step + 1] - lrs[step]) <= allowed + 1e-12, (step, sim.plans[step], sim.plans[step + 1])


def test_a_time_budgeted_run_resumes_with_the_same_plan(tmp_path, text_file, one_thread, monkeypatch):
    """Stopped and resumed on the same (simulated) clock, a time-budgeted run re-fits as the uninterrupted
    run did: the same step count, the same losses bit for bit, the same end."""
    straight_clock = SimulatedMachine(busy_then_idle).install(monkeypatch)
    straight = train(tiny_config(text_file, tmp_path / "straight", minutes=1.0, eval_every=20, optimizer="adamw"),
                     clock=straight_clock)
    monkeypatch.undo()
    halves_clock = SimulatedMachine(busy_then_idle).install(monkeypatch)
    halves = tiny_config(text_file, tmp_path / "halves", minutes=1.0, eval_every=20, optimizer="adamw", stop_at=30)
    first = train(halves, clock=halves_clock)
    assert first.step == 30 and not first.finished
    resumed = train(TrainConfig(**{**vars(halves), "stop_at": None, "resume": True}), clock=halves_clock)
    assert resumed.step == straight.step and halves_clock.now == straight_clock.now
    assert [(h["step"], h["train_loss"], h["val_loss"]) for h in resumed.history] == \
        [(h["step"], h["train_loss"], h["val_loss"]) for h in straight.history]
    assert resumed.val_loss == straight.val_loss


def test_tokens_per_s_is_the_steady_state_speed_and_warm_up_is_timed_apart(tmp_path, text_file, one_thread,
                                                                           monkeypatch):
    """A first step that compiles for 30 s, then 10 ms per step: tokens/s counts only the steps after warm-up."""
    from shared.pretraining import lr_at_step
    from shared.trainer import WARMUP_STEPS_UNTIMED

    sim = SimulatedMachine(lambda now, steps_done: 30.0 if steps_done == 0 else 0.01).install(monkeypatch)
    config = tiny_config(text_file, tmp_path, max_steps=9, optimizer="adamw")
    result = train(config, clock=sim)
    tokens_per_step = 4 * 32
    summary = result.summary
    assert summary["tokens_per_s"] == pytest.approx(tokens_per_step / 0.01) == result.tokens_per_s
    assert summary["warmup_seconds"] == pytest.approx(30.0 + (WARMUP_STEPS_UNTIMED - 1) * 0.01)
    assert summary["train_seconds"] == pytest.approx(30.0 + 8 * 0.01)  # every step: what the budget spends
    assert summary["steady_tokens"] == (9 - WARMUP_STEPS_UNTIMED) * tokens_per_step
    assert [h["tokens_per_s"] for h in result.history] == [None, pytest.approx(12_800), pytest.approx(12_800)]
    assert result.history[0]["warmup_seconds"] == summary["warmup_seconds"]
    # A fixed step count keeps appendix D's schedule exactly.
    assert [sim.lrs[s] for s in range(9)] == [lr_at_step(s, peak_lr=config.lr, warmup_steps=2, total_steps=9,
                                                         initial_lr=config.lr / 100, min_lr=config.min_lr)
                                              for s in range(9)]


def test_the_loss_the_trainer_compiles_is_the_books_loss():
    from shared.pretraining import calc_loss_batch
    from shared.trainer import next_token_loss

    torch.manual_seed(0)
    model = GPTModel({"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
                      "drop_rate": 0.0, "qkv_bias": False})
    inputs = torch.randint(0, 50, (3, 8))
    targets = torch.randint(0, 50, (3, 8))
    assert torch.equal(next_token_loss(model, inputs, targets), calc_loss_batch(inputs, targets, model, "cpu"))


def test_a_tied_gpt2_trains_resumes_exactly_and_loads_back_tied(tmp_path, text_file, one_thread):
    from safetensors import safe_open

    from shared.pretrained import load_trained_model

    straight = train(tiny_config(text_file, tmp_path / "straight", tie_weights=True, max_steps=6))
    untied = train(tiny_config(text_file, tmp_path / "untied", max_steps=2))
    vocab, width = straight.config["vocab_size"], straight.config["emb_dim"]
    assert straight.config["tie_embeddings"] and straight.parameters == untied.parameters - vocab * width
    assert straight.history[-1]["val_loss"] < straight.history[0]["val_loss"]  # it learns

    halves = tiny_config(text_file, tmp_path / "halves", tie_weights=True, max_steps=6, stop_at=3)
    train(halves)
    resumed = train(TrainConfig(**{**vars(halves), "stop_at": None, "resume": True}))
    assert [(h["train_loss"], h["val_loss"]) for h in resumed.history] == \
        [(h["train_loss"], h["val_loss"]) for h in straight.history]  # bit for bit
    with pytest.raises(ValueError, match="--tie-weights: saved True, now False"):
        train(TrainConfig(**{**vars(halves), "tie_weights": False, "resume": True}))

    with safe_open(straight.checkpoint, framework="pt") as f:  # the matrix is stored once
        assert "model.tok_emb.weight" in f.keys() and "model.out_head.weight" not in f.keys()
    model, tokenizer = load_trained_model(straight.checkpoint)
    assert model.out_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    ids = torch.tensor([tokenizer.encode("It is a truth")])
    assert model(ids).shape == (1, ids.shape[1], vocab)
    with pytest.raises(ValueError, match=r"tie_weights='yes' \(--tie-weights\) must be True, False or None"):
        TrainConfig(tie_weights="yes")


def test_each_architecture_ties_as_published_unless_told_otherwise(tmp_path, text_file, one_thread):
    from shared.pretrained import load_trained_model
    from shared.train import parse_args

    assert [parse_args(argv).tie_weights for argv in ([], ["--arch", "llama3"], ["--arch", "qwen3"])] == \
        [False, True, True]  # the book's GPTModel unties; small Llama 3.2 and Qwen3 tie
    assert parse_args(["--arch", "llama3", "--no-tie-weights"]).tie_weights is False
    assert parse_args(["--tie-weights"]).tie_weights is True

    tied = train(tiny_config(text_file, tmp_path / "tied", arch="llama3", max_steps=2))
    untied = train(tiny_config(text_file, tmp_path / "untied", arch="llama3", tie_weights=False, max_steps=2))
    vocab, width = untied.config["vocab_size"], untied.config["emb_dim"]
    assert untied.config["tie_embeddings"] is False and untied.parameters == tied.parameters + vocab * width
    model, _ = load_trained_model(untied.checkpoint)
    assert model.out_head.weight.data_ptr() != model.tok_emb.weight.data_ptr()
    with pytest.raises(ValueError, match="--tie-weights: saved False, now True"):
        train(TrainConfig(**{**vars(tiny_config(text_file, tmp_path / "untied", arch="llama3")), "resume": True}))


def test_chat_continues_a_prompt_repeatably(tmp_path, text_file):
    run("-m", "shared.train", "--data", str(text_file), *TINY, "--max-steps", "3", "--out", str(tmp_path))
    checkpoint = str(tmp_path / "checkpoint.safetensors")
    args = ["-m", "shared.chat", checkpoint, "--prompt", "Emma was", "--max-new-tokens", "15", "--seed", "1"]
    first, second = run(*args).stdout, run(*args).stdout
    assert first == second and first.startswith("Emma was") and len(first) > len("Emma was\n")
    old_name = run(*[a if a != "shared.chat" else "shared.generate" for a in args])  # the deprecated name still works
    assert old_name.stdout == first and "shared.generate is now shared.chat" in old_name.stderr
    greedy = run("-m", "shared.chat", checkpoint, "--prompt", "Emma was", "--temperature", "0").stdout
    assert greedy.startswith("Emma was")


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\x00\x01\x02binary", "binary file"),
    (b"caf\xe9 au lait " * 10, "not UTF-8"),
])
def test_bad_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    result = run("-m", "shared.train", "--data", str(path), *TINY, "--out", str(tmp_path / "o"), check=False)
    assert result.returncode == 2 and message in result.stderr


def test_a_text_shorter_than_a_window_is_refused(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("A short note.\n" * 3)
    result = run("-m", "shared.train", "--data", str(path), *TINY, "--tokenizer", "gpt2", "--out", str(tmp_path / "o"),
                 check=False)
    assert result.returncode == 2 and "fewer than one context window" in result.stderr


def test_an_existing_run_is_not_overwritten_and_resume_checks_settings(tmp_path, text_file):
    common = ["-m", "shared.train", "--data", str(text_file), *TINY, "--out", str(tmp_path)]
    run(*common, "--max-steps", "2")
    again = run(*common, "--max-steps", "2", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr and "--resume" in again.stderr
    other = run(*[a if a != "32" else "64" for a in common], "--max-steps", "2", "--resume", check=False)
    assert other.returncode == 2 and "--emb-dim: saved 32, now 64" in other.stderr


def test_a_missing_path_and_an_empty_folder_are_named(tmp_path):
    missing = run("-m", "shared.train", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o"),
                  check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run("-m", "shared.train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), check=False)
    assert empty.returncode == 2 and "holds no .txt files" in empty.stderr


def test_the_default_corpus_holds_out_a_whole_novel():
    corpus = build_corpus(None, 0.1, "persuasion")
    assert [name for name, _ in corpus.val] == ["persuasion"]
    assert "persuasion" not in [name for name, _ in corpus.train] and len(corpus.train) == 5


def test_batches_depend_only_on_seed_and_step():
    ids = torch.arange(1000)
    x1, y1 = sample_batch(ids, 4, 16, seed=1, step=5)
    x2, y2 = sample_batch(ids, 4, 16, seed=1, step=5)
    x3, _ = sample_batch(ids, 4, 16, seed=1, step=6)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert torch.equal(y1, x1 + 1)  # targets are the inputs shifted by one token


def test_batches_from_a_memory_mapped_token_file_equal_those_from_memory(tmp_path):
    ids = np.arange(1000, dtype=np.uint16)
    ids.tofile(tmp_path / "ids.bin")
    mapped = np.memmap(tmp_path / "ids.bin", dtype=np.uint16, mode="r")
    x_map, y_map = sample_batch(mapped, 4, 16, seed=1, step=5)
    x_mem, y_mem = sample_batch(torch.arange(1000), 4, 16, seed=1, step=5)
    assert x_map.dtype == torch.long and torch.equal(x_map, x_mem) and torch.equal(y_map, y_mem)


def test_the_command_trains_on_a_token_file_holding_out_whole_documents(tmp_path):
    from shared.token_file import split_token_file, write_token_file
    from shared.tokenization import BPETokenizer

    text = load_novel("emma")[:40_000]
    tokenizer = BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>"])
    documents = [text[i : i + 4_000] for i in range(0, len(text), 4_000)]
    token_file = write_token_file(tmp_path / "emma.bin", documents, tokenizer)

    train_ids, val_ids = split_token_file(token_file, 0.1)
    assert isinstance(train_ids, np.memmap)  # training reads the file through the map, never whole
    assert train_ids[-1] == token_file.eot_id and len(train_ids) + len(val_ids) == len(token_file)
    held_out = documents[-int((val_ids == token_file.eot_id).sum()):]  # whole documents at the end
    assert tokenizer.decode(val_ids.tolist()) == "".join(d + "<|endoftext|>" for d in held_out)

    tiny = [a for a in TINY if a not in ("--tokenizer", "300")]
    result = run("-m", "shared.train", "--data", str(tmp_path / "emma.bin"), *tiny, "--max-steps", "4",
                 "--out", str(tmp_path / "run"))
    assert "reading the token file" in result.stdout and "bits per byte" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["step"] == 4 and summary["config"]["vocab_size"] == tokenizer.vocab_size
    assert summary["val_bytes"] == sum(len(d.encode("utf-8")) for d in held_out)  # scored whole

    mixed = run("-m", "shared.train", "--data", str(tmp_path / "emma.bin"), str(tmp_path), *tiny, "--max-steps", "1",
                "--out", str(tmp_path / "mixed"), check=False)
    assert mixed.returncode != 0 and "Pass the token file alone" in mixed.stderr


def test_flops_per_token_matches_a_count_of_the_models_matrix_products():
    """MFU's numerator: PyTorch's FLOP counter over one forward and backward pass agrees with the formula.

    With the book's explicit attention the counter sees every matrix product (the blocks, the output
    head, attention's scores and weighted sums over the whole causal square) and no embedding lookup.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from shared.scaling import flops_per_token

    cfg = {"vocab_size": 500, "context_length": 64, "emb_dim": 48, "n_heads": 4, "n_layers": 3, "drop_rate": 0.0,
           "qkv_bias": True, "use_sdpa": False}
    model = GPTModel(cfg)
    ids = torch.randint(0, cfg["vocab_size"], (2, cfg["context_length"]))
    with FlopCounterMode(display=False) as counter:
        model(ids).sum().backward()
    assert flops_per_token(cfg) == counter.get_total_flops() / ids.numel()
    # counting the embedding tables as if they multiplied, as 6 x all parameters does, overstates it by a fifth
    all_parameters = sum(p.numel() for p in model.parameters())
    attention = 12 * cfg["n_layers"] * cfg["context_length"] * cfg["emb_dim"]
    assert (6 * all_parameters + attention) / flops_per_token(cfg) > 1.2


@pytest.mark.parametrize("arch, experts", [("llama3", 0), ("qwen3", 0), ("qwen3", 4)])
def test_flops_per_token_counts_chapter_12_models_exactly(arch, experts):
    """The same count for grouped-query attention, SwiGLU, QK-norm and a mixture of experts (2 of 4 chosen)."""
    from torch.utils.flop_counter import FlopCounterMode

    from shared.architectures import architecture_config, build_model
    from shared.scaling import flops_per_token

    cfg = architecture_config(arch, {"vocab_size": 500, "context_length": 64, "emb_dim": 48, "n_heads": 4,
                                     "n_layers": 3})
    if experts:
        del cfg["hidden_dim"]
        cfg.update(num_experts=experts, num_experts_per_tok=2, moe_intermediate_size=32)
    ids = torch.randint(0, cfg["vocab_size"], (2, cfg["context_length"]))
    with FlopCounterMode(display=False) as counter:
        build_model(cfg)(ids).sum().backward()
    assert flops_per_token(cfg) == counter.get_total_flops() / ids.numel()


def test_each_optimizer_gets_its_own_tuned_defaults_and_flags_win():
    from shared.train import parse_args

    muon, adamw = parse_args([]), parse_args(["--optimizer", "adamw"])
    assert muon.optimizer == "muon"
    assert (muon.lr, muon.muon_lr, muon.weight_decay, muon.warmup_steps) == (2e-3, 1e-2, 0.3, 50)
    assert (adamw.lr, adamw.muon_lr, adamw.weight_decay, adamw.warmup_steps) == (3e-3, None, 0.1, 100)
    assert set(RECIPES) == {"muon", "adamw"}
    mine = parse_args(["--lr", "1e-3", "--muon-lr", "4e-3", "--weight-decay", "0", "--warmup-steps", "7"])
    assert (mine.lr, mine.muon_lr, mine.weight_decay, mine.warmup_steps) == (1e-3, 4e-3, 0.0, 7)


@pytest.mark.parametrize("argv", [["--optimizer", "adamw", "--muon-lr", "1e-2"], ["--muon-lr", "-1"]])
def test_a_muon_lr_without_muon_or_below_zero_is_refused(argv, capsys):
    from shared.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "(--muon-lr) sets Muon's peak learning rate: it needs optimizer 'muon'" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["llama3", "qwen3"])
def test_chapter_12_architectures_train_resume_exactly_and_load_back(arch, tmp_path, text_file, one_thread):
    from shared.llama3 import Llama3Model
    from shared.pretrained import load_trained_model
    from shared.qwen3 import Qwen3Model

    straight = train(tiny_config(text_file, tmp_path / "straight", arch=arch, max_steps=6))
    assert straight.finished and straight.history[-1]["val_loss"] < straight.history[0]["val_loss"]  # it learns
    config = json.loads(saved_metadata(tmp_path / "straight")["config"])
    assert config["arch"] == arch and config["n_kv_groups"] == 1 and config["tie_embeddings"]
    assert config.get("qk_norm", False) == (arch == "qwen3")

    halves = tiny_config(text_file, tmp_path / "halves", arch=arch, max_steps=6, stop_at=3)
    train(halves)
    resumed = train(TrainConfig(**{**vars(halves), "stop_at": None, "resume": True}))
    assert [(h["train_loss"], h["val_loss"]) for h in resumed.history] == \
        [(h["train_loss"], h["val_loss"]) for h in straight.history]  # bit for bit

    model, tokenizer = load_trained_model(straight.checkpoint)
    assert type(model) is {"llama3": Llama3Model, "qwen3": Qwen3Model}[arch] and not model.training
    assert model.out_head.weight is model.tok_emb.weight  # tied, as small Llama 3.2 and Qwen3 are
    ids = torch.tensor([tokenizer.encode("It is a truth")])
    assert model(ids).shape == (1, ids.shape[1], config["vocab_size"])

    with pytest.raises(ValueError, match="--arch: saved 'gpt2', now '" + arch):  # a GPT-2 run is not continued as arch
        gpt2 = tiny_config(text_file, tmp_path / "gpt2", max_steps=2)
        train(gpt2)
        train(TrainConfig(**{**vars(gpt2), "arch": arch, "resume": True}))


@pytest.mark.parametrize("settings, message", [
    ({"arch": "mamba"}, "arch='mamba'.*gpt2, llama3, qwen3"),
    ({"arch": "llama3", "gpt2_size": "gpt2"}, "no GPT-2 sizes and no dropout"),
    ({"arch": "qwen3", "drop_rate": 0.1}, "no GPT-2 sizes and no dropout"),
])
def test_architecture_settings_that_cannot_train_are_refused(settings, message, tmp_path, text_file):
    with pytest.raises(ValueError, match=message):
        tiny_config(text_file, tmp_path, **settings)


def test_architecture_configs_divide_the_heads_into_kv_groups():
    from shared.architectures import architecture_config, kv_groups

    assert [kv_groups(n) for n in (1, 2, 3, 4, 5, 6, 12)] == [1, 1, 1, 2, 1, 3, 6]
    sizes = {"vocab_size": 300, "context_length": 32, "emb_dim": 60, "n_heads": 5, "n_layers": 1, "drop_rate": 0.0}
    assert architecture_config("gpt2", sizes) == sizes  # GPT-2 configs are unchanged (no "arch" key)
    qwen = architecture_config("qwen3", sizes)
    assert (qwen["n_kv_groups"], qwen["head_dim"], qwen["hidden_dim"]) == (1, 12, 160)
