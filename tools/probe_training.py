"""Probe the training command, the chat command and the public API as a new user would: bad inputs and faults.

    python tools/probe_training.py            # about 3 minutes on 2 CPU cores
    python tools/probe_training.py --faults 0 # bad inputs only

Bad inputs: each is tried once and sorted into "clear error" (a message that names the problem,
exit code 1 or 2 for a command), "raw traceback" (an exception the user was not meant to see) or
"accepted" (no error at all: for an input that is wrong, a silently wrong result). Faults: a tiny run
is stopped by SIGINT, two SIGINTs, SIGTERM or SIGKILL at a random moment, then resumed; the probe
checks that the checkpoint loads, that the stop kept every completed step (for the signals a program
can catch), and that the resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from shared.corpus import load_novel  # noqa: E402

TINY = ["--tokenizer", "300", "--n-layers", "1", "--emb-dim", "32", "--n-heads", "2", "--context-length", "32",
        "--batch-size", "4", "--eval-windows", "4", "--warmup-steps", "2", "--no-progress", "--optimizer", "adamw"]


def classify(call) -> tuple[str, str]:
    """Run `call()`; return (outcome, what the user saw) with outcome 'clear error', 'raw traceback' or 'accepted'."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            call()
    except SystemExit as stop:
        said = err.getvalue().strip().splitlines()
        last = said[-1] if said else ""
        if stop.code in (1, 2) and last and "Traceback" not in err.getvalue():
            return "clear error", last
        return ("accepted", "exit 0") if stop.code in (0, None) else ("raw traceback", f"exit {stop.code}: {last}")
    except (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError, PermissionError, OSError) as error:
        message = str(error)
        # A sentence names the problem; a bare KeyError('x') or an errno string does not.
        if len(message) >= 30 and " " in message and not message.startswith("[Errno"):
            return "clear error", f"{type(error).__name__}: {message.splitlines()[0]}"
        return "raw traceback", f"{type(error).__name__}: {message}"
    except Exception as error:  # anything else reached the user as a traceback
        return "raw traceback", f"{type(error).__name__}: {error}"
    return "accepted", "no error"


def bad_inputs(work: Path, text_file: Path, checkpoint: Path) -> list[tuple[str, object]]:
    """(description, call) for each wrong input: command flags, chat flags, API arguments and damaged files."""
    from shared import chat, train
    from shared.checkpoint import load_checkpoint
    from shared.dataloader import GPTDatasetV1, create_dataloader_v1
    from shared.evaluation import bits_per_byte, text_windows
    from shared.instruction import load_instruction_data
    from shared.lora import LoRALayer
    from shared.pretrained import load_trained_model
    from shared.pretraining import generate, lr_at_step
    from shared.token_file import get_batch, open_token_file, write_token_file
    from shared.tokenization import BPETokenizer, get_gpt2_tokenizer, tokenizer_from_description
    from shared.trainer import TrainConfig
    from shared.transformer import GPTModel
    from shared.weights import load_gpt2_safetensors

    counter = iter(range(10_000))

    def command(*flags):
        out = work / f"run{next(counter)}"
        return lambda: train.main(["--data", str(text_file), *TINY, "--max-steps", "3", "--out", str(out), *flags])

    cases = [(f"train {' '.join(flags)}", command(*flags)) for flags in [
        ("--max-norm", "-1"), ("--warmup-steps", "-10"), ("--minutes", "-1"), ("--minutes", "0"), ("--stop-at", "-3"),
        ("--stop-at", "0"), ("--max-steps", "0"), ("--batch-size", "0"), ("--accumulation-steps", "0"),
        ("--eval-every", "0"), ("--eval-windows", "0"), ("--save-every", "0"), ("--lr", "0"), ("--lr", "-1e-3"),
        ("--lr", "nan"), ("--min-lr", "-1"), ("--weight-decay", "-0.1"), ("--drop-rate", "1.5"),
        ("--drop-rate", "-0.1"),
        ("--n-layers", "0"), ("--emb-dim", "0"), ("--n-heads", "0"), ("--n-heads", "3"), ("--context-length", "0"),
        ("--val-fraction", "0"), ("--val-fraction", "1.5"), ("--tokenizer", "100"), ("--tokenizer", "abc"),
        ("--tokenizer", "90000"), ("--config", "gpt3"), ("--device", "gpu0"), ("--device", "tpu"),
        ("--device", "cuda:7"), ("--precision", "fp16"), ("--optimizer", "sgd"), ("--schedule", "linear"),
        ("--prompt", ""), ("--muon-lr", "1e-2"), ("--dist-timeout", "0"), ("--distributed", "ddp"),
        ("--data", str(work / "missing.txt")), ("--data", str(work / "empty-folder")),
        ("--val-novel", "ulysses"), ("--out", str(text_file / "inside-a-file")), ("--resume",),
    ]]
    (work / "empty-folder").mkdir(exist_ok=True)

    resumed = work / "resumable"
    train.main(["--data", str(text_file), *TINY, "--max-steps", "6", "--stop-at", "2", "--out", str(resumed)])
    for flags in [("--max-steps", "10"), ("--stop-at", "1"), ("--emb-dim", "64"), ("--lr", "1e30")]:
        cases.append((f"train --resume {' '.join(flags)}", lambda f=flags: train.main(
            ["--data", str(text_file), *TINY, "--max-steps", "6", "--out", str(resumed), "--resume", *f])))

    cases += [(f"chat {' '.join(flags)}", lambda f=flags: chat.main([str(checkpoint), "--prompt", "Emma", *f]))
              for flags in [("--top-p", "1.5"), ("--top-p", "nan"), ("--top-p", "0"), ("--temperature", "nan"),
                            ("--temperature", "-1"), ("--max-new-tokens", "-5"), ("--max-new-tokens", "0"),
                            ("--top-k", "-1"), ("--device", "gpu0"), ("--prompt", "")]]
    cases.append(("chat on a missing file", lambda: chat.main([str(work / "nope.safetensors"), "--prompt", "x"])))
    cases.append(("chat on a text file", lambda: chat.main([str(text_file), "--prompt", "x"])))

    model = GPTModel({"vocab_size": 50, "context_length": 8, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
                      "drop_rate": 0.0, "qkv_bias": False})
    idx = torch.zeros(1, 2, dtype=torch.long)
    gpt2 = get_gpt2_tokenizer()
    cases += [
        ("generate temperature=nan", lambda: generate(model, idx, 3, 8, temperature=float("nan"))),
        ("generate max_new_tokens=-5", lambda: generate(model, idx, -5, 8)),
        ("generate top_k=0", lambda: generate(model, idx, 3, 8, top_k=0)),
        ("generate top_p=1.5", lambda: generate(model, idx, 3, 8, top_p=1.5)),
        ("lr_at_step warmup beyond the run", lambda: lr_at_step(0, peak_lr=1e-3, warmup_steps=10, total_steps=5)),
        ("lr_at_step peak_lr=nan", lambda: lr_at_step(0, peak_lr=float("nan"), warmup_steps=1, total_steps=5)),
        ("GPTDatasetV1 stride=0", lambda: GPTDatasetV1(list(range(100)), None, 8, 0)),
        ("create_dataloader_v1 on a short text", lambda: create_dataloader_v1("Too short.", max_length=64)),
        ("text_windows stride > context", lambda: text_windows(100, 8, 16)),
        ("bits_per_byte num_bytes=0", lambda: bits_per_byte(1.0, 0)),
        ("LoRALayer rank=0", lambda: LoRALayer(4, 4, 0, 8)),
        ("get_batch batch_size=0", lambda: get_batch(torch.arange(100).numpy(), 0, 8)),
        ("TrainConfig(data=[])... tokenizer='1'", lambda: TrainConfig(tokenizer="1")),
        ("encode(bytes)", lambda: gpt2.encode(b"Emma") if hasattr(gpt2, "encode") else None),
        ("BPETokenizer.encode(bytes)", lambda: BPETokenizer.train("a b c " * 10, 260).encode(b"abc")),
        ("tokenizer_from_description unknown", lambda: tokenizer_from_description({"kind": "sentencepiece"})),
        ("BPETokenizer.train vocab_size=10", lambda: BPETokenizer.train("abc", 10)),
    ]

    damaged = work / "damaged"
    damaged.mkdir(exist_ok=True)
    (damaged / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    tokenizer_data = json.loads(BPETokenizer.train("the cat sat " * 20, 262).to_json())
    (damaged / "crafted.json").write_text(json.dumps({**tokenizer_data, "pattern": "(a+)+$"}))
    (damaged / "bad-regex.json").write_text(json.dumps({**tokenizer_data, "pattern": "(unclosed"}))
    (damaged / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    (damaged / "latin1.json").write_bytes('[{"instruction": "caf\xe9"}]'.encode("latin-1"))
    (damaged / "broken.json").write_text('[{"instruction": "a",')
    (damaged / "wrong-fields.json").write_text('[{"question": "a"}]')
    token_file = damaged / "tokens.bin"
    write_token_file(token_file, ["Emma was handsome."], gpt2)
    sidecar = Path(f"{token_file}.json")
    header = json.loads(sidecar.read_text())
    flipped = damaged / "flipped.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[-3] ^= 0x40
    flipped.write_bytes(bytes(data))
    truncated = damaged / "truncated.safetensors"
    truncated.write_bytes(checkpoint.read_bytes()[:-1000])

    def damaged_sidecar(change):
        def call():
            broken = dict(header)
            change(broken)
            sidecar.write_text(json.dumps(broken))
            open_token_file(token_file)
        return call

    cases += [
        ("BPETokenizer.load of a binary file", lambda: BPETokenizer.load(damaged / "binary.json")),
        ("BPETokenizer.load of a crafted pattern", lambda: BPETokenizer.load(damaged / "crafted.json")),
        ("BPETokenizer.load of an invalid regex", lambda: BPETokenizer.load(damaged / "bad-regex.json")),
        ("load_gpt2_safetensors of a corrupt file", lambda: load_gpt2_safetensors(damaged)),
        ("load_instruction_data of latin-1", lambda: load_instruction_data(damaged / "latin1.json")),
        ("load_instruction_data of broken JSON", lambda: load_instruction_data(damaged / "broken.json")),
        ("load_instruction_data without fields", lambda: load_instruction_data(damaged / "wrong-fields.json")),
        ("token file sidecar without eot_id", damaged_sidecar(lambda h: h.pop("eot_id"))),
        ("token file sidecar with a text count", damaged_sidecar(lambda h: h.update(num_tokens="3"))),
        ("token file sidecar without tokenizer", damaged_sidecar(lambda h: h.pop("tokenizer"))),
        ("a checkpoint with one flipped bit", lambda: load_trained_model(flipped)),
        ("a truncated checkpoint", lambda: load_trained_model(truncated)),
        ("a checkpoint into a model of another size", lambda: load_checkpoint(checkpoint, model)),
    ]
    return cases


def fault_trials(work: Path, text_file: Path, count: int, seed: int) -> list[dict]:
    """Stop a tiny run at a random moment, resume it, compare with an uninterrupted run."""
    from shared.checkpoint import read_checkpoint
    from shared.train import main

    common = ["--data", str(text_file), *TINY, "--max-steps", "30", "--eval-every", "1", "--save-every", "10"]
    with contextlib.redirect_stdout(io.StringIO()):
        main([*common, "--out", str(work / "reference")])

    def history(out: Path) -> list:
        return [(h["step"], h["train_loss"], h["val_loss"])
                for h in json.loads(read_checkpoint(out / "checkpoint.safetensors")[1]["extra"])["history"]]

    reference = history(work / "reference")
    rng = random.Random(seed)
    kinds = ["SIGINT", "SIGINT twice", "SIGTERM", "SIGKILL"]
    results = []
    for trial in range(count):
        kind, out = kinds[trial % len(kinds)], work / f"fault{trial}"
        process = subprocess.Popen([sys.executable, "-m", "shared.train", *common, "--out", str(out)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last_step, target = 0, rng.randint(1, 25)
        for line in process.stdout:  # steps print as they finish (one evaluation per step)
            if line.startswith("step"):
                last_step = int(line.split()[1].replace(",", ""))
                if last_step >= target:
                    break
        time.sleep(rng.uniform(0, 0.05))  # land anywhere inside the next step
        if kind == "SIGKILL":
            process.kill()
        else:
            process.send_signal(signal.SIGTERM if kind == "SIGTERM" else signal.SIGINT)
            if kind == "SIGINT twice":
                time.sleep(rng.uniform(0, 0.01))
                process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
        saved, loaded = 0, True
        if (out / "checkpoint.safetensors").exists():
            try:
                saved = int(read_checkpoint(out / "checkpoint.safetensors")[1]["step"])
            except ValueError:
                loaded = False
        resumed_ok = True
        if saved < 30:
            resume = subprocess.run([sys.executable, "-m", "shared.train", *common, "--out", str(out),
                                     *(["--resume"] if saved else [])], cwd=ROOT, capture_output=True, text=True)
            resumed_ok = resume.returncode == 0
        exact = resumed_ok and history(out) == reference
        lost = max(last_step - saved, 0)
        results.append({"kind": kind, "exit": process.returncode, "last_step_seen": last_step, "saved_step": saved,
                        "loaded": loaded,
                        "steps_lost": lost, "resume_exact": exact})
        print(f"  {kind:13} exit {process.returncode:>4}  last step seen {last_step:>2}  saved {saved:>2}  "
              f"lost {lost}  resumed exactly: {exact}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=16, help="fault trials (a multiple of 4 covers each kind)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text_file = work / "emma.txt"
        text_file.write_text(load_novel("emma")[:40_000], encoding="utf-8")
        from shared.train import main as train_main

        with contextlib.redirect_stdout(io.StringIO()):
            train_main(["--data", str(text_file), *TINY, "--max-steps", "2", "--out", str(work / "model")])
        checkpoint = work / "model" / "checkpoint.safetensors"
        outcomes = []
        for description, call in bad_inputs(work, text_file, checkpoint):
            outcome, seen = classify(call)
            outcomes.append(outcome)
            if outcome != "clear error":
                print(f"  {outcome.upper()}: {description} -> {seen}", flush=True)
        print(f"bad inputs: {len(outcomes)} tried, {outcomes.count('clear error')} clear errors, "
              f"{outcomes.count('raw traceback')} raw tracebacks, {outcomes.count('accepted')} accepted", flush=True)
        if args.faults:
            results = fault_trials(work, text_file, args.faults, args.seed)
            catchable = [r for r in results if r["kind"] != "SIGKILL"]
            print(f"faults: {len(results)} trials; checkpoints that loaded: {sum(r['loaded'] for r in results)}; "
                  f"resumed exactly in "
                  f"{sum(r['resume_exact'] for r in results)}; catchable signals ({len(catchable)}) lost "
                  f"{sum(r['steps_lost'] for r in catchable)} completed steps; SIGKILL lost "
                  f"{sum(r['steps_lost'] for r in results if r['kind'] == 'SIGKILL')} (saves every 10 steps)")


if __name__ == "__main__":
    main()
