"""A training run never loses work and never trains silently wrong: signals, divergence, the run folder.

Tiny models on a slice of a novel, one thread; the command runs in-process (`main`) where a new
process adds nothing, and as a real process where signals are the point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shared.checkpoint import load_checkpoint, read_checkpoint
from shared.corpus import load_novel
from shared.interrupts import Interrupted, StopRequests
from shared.run_folder import LOCK_NAME, RunFolderBusy, RunLock, check_room, remove_orphan_temp_files
from shared.train import main
from shared.trainer import TrainConfig, TrainingDiverged, train
from shared.transformer import GPTModel

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--tokenizer", "300", "--n-layers", "1", "--emb-dim", "32", "--n-heads", "2", "--context-length", "32",
        "--batch-size", "4", "--eval-every", "2", "--eval-windows", "4", "--warmup-steps", "2", "--no-progress",
        "--optimizer", "adamw"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "emma.txt"
    path.write_text(load_novel("emma")[:40_000], encoding="utf-8")
    return path


def tiny(text_file: Path, out: Path, **settings) -> TrainConfig:
    return TrainConfig(data=[str(text_file)], tokenizer="300", n_layers=1, emb_dim=32, n_heads=2, context_length=32,
                       batch_size=4, eval_every=2, eval_windows=4, warmup_steps=2, progress=False, optimizer="adamw",
                       out=str(out), **settings)


def losses(history: list[dict]) -> list[tuple]:
    return [(h["step"], h["train_loss"], h["val_loss"]) for h in history]


def saved_history(out: Path) -> list[tuple]:
    return losses(json.loads(read_checkpoint(out / "checkpoint.safetensors")[1]["extra"])["history"])


# -- signals ---------------------------------------------------------------------------------------------


def test_an_interrupt_inside_a_step_takes_effect_after_it_and_resuming_is_exact(tmp_path, text_file, one_thread,
                                                                             monkeypatch):
    """Ctrl-C between backward and the optimizer step: the step completes, is saved whole, and resuming
    reproduces the uninterrupted run bit for bit."""
    straight = train(tiny(text_file, tmp_path / "straight", max_steps=6))

    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def step_with_an_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the third backward pass, before its update
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, in the middle of the step
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_with_an_interrupt)
    config = tiny(text_file, tmp_path / "halves", max_steps=6)
    with pytest.raises(Interrupted) as stopped:
        train(config)
    assert stopped.value.exit_code == 130 and "interrupted at step 3" in str(stopped.value)
    assert read_checkpoint(tmp_path / "halves" / "checkpoint.safetensors")[1]["step"] == "3"
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    resumed = train(TrainConfig(**{**vars(config), "resume": True}))
    assert losses(resumed.history) == losses(straight.history) and resumed.val_loss == straight.val_loss
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


def test_stop_requests_record_the_first_signal_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    said = []
    with StopRequests(said.append) as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert stop.signal == signal.SIGTERM and len(said) == 2 and "again" in said[1]
    assert signal.getsignal(signal.SIGTERM) == before


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shared.train", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for(process: subprocess.Popen, prefix: str) -> None:
    for line in process.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"the run ended before printing {prefix!r}")


def test_sigterm_and_a_second_signal_save_the_run_and_resume_exactly(tmp_path, text_file):
    common = ["--data", str(text_file), *TINY, "--max-steps", "40", "--save-every", "1000"]
    main([*common, "--out", str(tmp_path / "straight")])
    process = start([*common, "--out", str(tmp_path / "run")])
    wait_for(process, "step")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)  # (sent together, the lower-numbered SIGINT would be delivered first)
    process.send_signal(signal.SIGINT)  # a second signal while it finishes: it must not cut the save short
    rest = process.communicate(timeout=120)[0]
    assert process.returncode == 143, rest
    assert "SIGTERM: stopping after this step" in rest and "interrupted at step" in rest
    step = int(read_checkpoint(tmp_path / "run" / "checkpoint.safetensors")[1]["step"])
    assert 2 <= step < 40  # saved with work since the last periodic save (there was none)
    main([*common, "--out", str(tmp_path / "run"), "--resume"])
    assert saved_history(tmp_path / "run") == saved_history(tmp_path / "straight")


# -- divergence ------------------------------------------------------------------------------------------


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, text_file, capsys):
    common = ["--data", str(text_file), *TINY, "--max-steps", "8", "--out", str(tmp_path)]
    main([*common, "--stop-at", "2"])
    with pytest.raises(SystemExit) as exited:
        main([*common, "--resume", "--lr", "1e30"])
    error = capsys.readouterr().err
    assert exited.value.code == 1
    assert "the run diverged and stopped; the last checkpoint, step 2" in error and "lower --lr 1e+30" in error
    model = GPTModel(json.loads(read_checkpoint(tmp_path / "checkpoint.safetensors")[1]["config"]))
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", model).step == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_divergence_before_any_save_writes_nothing(tmp_path, text_file, one_thread):
    with pytest.raises(TrainingDiverged, match="no checkpoint was written"):
        train(tiny(text_file, tmp_path, max_steps=8, lr=1e30))
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_a_corrupt_checkpoint_is_refused_on_resume(tmp_path, text_file, capsys):
    common = ["--data", str(text_file), *TINY, "--max-steps", "4", "--out", str(tmp_path)]
    main([*common, "--stop-at", "2"])
    path = tmp_path / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exited:
        main([*common, "--resume"])
    assert exited.value.code == 2 and "is corrupt: its tensors do not match" in capsys.readouterr().err


# -- the run folder --------------------------------------------------------------------------------------


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(tmp_path, text_file):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                      "started": "2026-12-04T12:00:00"}))
        with pytest.raises(RunFolderBusy, match=f"another run is training into .*process {holder.pid}"):
            train(tiny(text_file, tmp_path, max_steps=2))
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone: the lock is stale, so the next run takes it over, and frees it at the end.
    assert train(tiny(text_file, tmp_path, max_steps=2)).finished
    assert not (tmp_path / LOCK_NAME).exists()


def test_two_concurrent_runs_of_the_command_into_one_folder(tmp_path, text_file, capsys):
    first = start(["--data", str(text_file), *TINY, "--max-steps", "100000", "--out", str(tmp_path)])
    try:
        wait_for(first, "step")
        with pytest.raises(SystemExit) as second:
            main(["--data", str(text_file), *TINY, "--max-steps", "4", "--out", str(tmp_path)])
        assert second.value.code == 2
        assert f"another run is training into {tmp_path} (process {first.pid}" in capsys.readouterr().err
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130 and not (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_exclusive_and_released():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        with RunLock(folder):
            with pytest.raises(RunFolderBusy, match=f"process {os.getpid()}"):
                RunLock(folder).__enter__()
        with RunLock(folder):  # free again
            pass


def test_an_unwritable_folder_is_found_before_training(tmp_path, text_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot write into the run folder .*a-file/out"):
        train(tiny(text_file, blocker / "out", max_steps=2))
    with pytest.raises(OSError, match=r"MiB free, but a checkpoint of this run needs about"):
        check_room(tmp_path, 1 << 60)


def test_half_written_files_of_a_killed_run_are_removed(tmp_path):
    orphan = tmp_path / ".checkpoint.safetensors.3f9a.tmp"
    orphan.write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("someone else's")
    assert remove_orphan_temp_files(tmp_path, ("checkpoint.safetensors",)) == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


# -- settings that would train wrongly -------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"max_norm": -1.0}, r"max_norm=-1.0 \(--max-norm\) must be 0 or more"),
    ({"warmup_steps": -10}, r"warmup_steps=-10 \(--warmup-steps\) must be a whole number, at least 0"),
    ({"minutes": -1.0}, r"minutes=-1.0 \(--minutes\) must be positive"),
    ({"stop_at": -3}, r"stop_at=-3 \(--stop-at\) must be a whole number, at least 1"),
    ({"tokenizer": "100"}, r"tokenizer='100' \(--tokenizer\): use 'gpt2', or a vocabulary size of at least 257"),
    ({"prompt": ""}, r"prompt='' \(--prompt\) is empty"),
    ({"lr": float("nan")}, r"lr=nan \(--lr\) must be positive"),
])
def test_settings_that_would_train_wrongly_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_a_vocabulary_the_text_cannot_fill_is_refused(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the cat sat on the mat. " * 200)
    with pytest.raises(ValueError, match=r"--tokenizer 5000: the training text supports only \d+ ids"):
        train(TrainConfig(data=[str(short)], tokenizer="5000", max_steps=2, out=str(tmp_path / "o"), progress=False))


def test_resume_refuses_a_changed_length_or_a_stop_already_passed(tmp_path, text_file, one_thread):
    config = tiny(text_file, tmp_path, max_steps=6, stop_at=2)
    train(config)
    with pytest.raises(ValueError, match="--max-steps 10, but the run was planned for 6 steps"):
        train(TrainConfig(**{**vars(config), "resume": True, "max_steps": 10, "stop_at": None}))
    with pytest.raises(ValueError, match="--stop-at 2, but the run already is at step 2"):
        train(TrainConfig(**{**vars(config), "resume": True}))


@pytest.mark.parametrize("flags, message", [
    (["--top-p", "1.5"], "--top-p 1.5: use a probability mass in"),
    (["--top-p", "nan"], "--top-p nan"),
    (["--temperature", "nan"], "--temperature nan"),
    (["--max-new-tokens", "-5"], "--max-new-tokens -5"),
    (["--top-k", "-1"], "--top-k -1"),
])
def test_the_chat_command_refuses_decoding_options_out_of_range(flags, message, capsys):
    from shared.chat import parse_args

    with pytest.raises(SystemExit):
        parse_args(["model.safetensors", *flags])
    assert message in capsys.readouterr().err


# -- files are data: a clear sentence for each bad one ---------------------------------------------------


def test_a_tokenizer_file_with_an_unknown_pattern_is_refused_before_it_can_hang(tmp_path):
    from shared.tokenization import BPETokenizer

    tokenizer = BPETokenizer.train("the cat sat on the mat " * 20, 270)
    data = json.loads(tokenizer.to_json())
    data["pattern"] = "(a+)+$"  # catastrophic backtracking: 41 characters would take hours
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"pattern '\(a\+\)\+\$' is not one of the known ones \(gpt2\).*hang"):
        BPETokenizer.from_json(json.dumps(data), source="crafted.json")
    assert time.perf_counter() - started < 1


def test_bad_tokenizer_input_gets_a_sentence(tmp_path):
    from shared.tokenization import BPETokenizer, get_gpt2_bpe_tokenizer

    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(ValueError, match="binary.json is not a tokenizer file"):
        BPETokenizer.load(tmp_path / "binary.json")
    with pytest.raises(TypeError, match="encode takes a str, not bytes. Decode bytes first"):
        get_gpt2_bpe_tokenizer().encode(b"Emma")


@pytest.mark.parametrize("change, message", [
    (lambda h: h.pop("eot_id"), "has no 'eot_id' entry"),
    (lambda h: h.update(num_tokens="12"), "a malformed 'num_tokens' entry"),
    (lambda h: h.update(tokenizer=None), "a malformed 'tokenizer' entry"),
])
def test_a_damaged_token_file_description_is_named(tmp_path, change, message):
    from shared.token_file import open_token_file, write_token_file
    from shared.tokenization import get_gpt2_tokenizer

    write_token_file(tmp_path / "c.bin", ["Emma was handsome."], get_gpt2_tokenizer())
    sidecar = tmp_path / "c.bin.json"
    header = json.loads(sidecar.read_text())
    change(header)
    sidecar.write_text(json.dumps(header))
    with pytest.raises(ValueError, match=message + ".*Write the token file again"):
        open_token_file(tmp_path / "c.bin")


def test_corrupt_weights_and_instruction_files_are_named(tmp_path):
    from shared.instruction import load_instruction_data
    from shared.weights import load_gpt2_safetensors

    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        load_gpt2_safetensors(tmp_path)
    (tmp_path / "latin1.json").write_bytes('[{"instruction": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.json is not UTF-8 text"):
        load_instruction_data(tmp_path / "latin1.json")
    (tmp_path / "broken.json").write_text('[{"instruction": "a",')
    with pytest.raises(ValueError, match=r"broken.json is not valid JSON \(.* at line 1"):
        load_instruction_data(tmp_path / "broken.json")


def test_decoding_refuses_nan_and_negative_lengths():
    from shared.pretraining import generate

    model = GPTModel({"vocab_size": 20, "context_length": 8, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
                      "drop_rate": 0.0, "qkv_bias": False})
    idx = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature=nan is not a number >= 0"):
        generate(model, idx, 3, 8, temperature=float("nan"))
    with pytest.raises(ValueError, match="max_new_tokens=-5 is negative"):
        generate(model, idx, -5, 8)
