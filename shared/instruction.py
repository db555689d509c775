"""Chapter 7: finetuning a GPT to follow instructions, from the dataset to scoring its answers.

The book's names: `download_and_load_file`, `format_input`, `InstructionDataset`, `custom_collate_fn`
(with the instruction masking of exercise 7.2 as an option), and `query_model` and
`generate_model_scores` for an LLM judge run by Ollama. Beyond the book: `load_instruction_data` reads
the dataset shipped with the project (made from the Austen novels by `shared/instruction_data.py`),
and `score_responses` grades answers automatically, by exact match or word F1, overall and per task.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from shared.corpus import DATA_DIR, read_shipped_file
from shared.files import atomic_write_text, download
from shared.pretraining import generate_batch

INSTRUCTION_DATA = "instructions/austen-instructions.json"  # under shared/data/
INSTRUCTION_DATA_PATH = DATA_DIR / INSTRUCTION_DATA
# The book's 1,100 entries, and the 52,002 of Stanford Alpaca (exercise 7.3), for readers who are online.
INSTRUCTION_DATA_URL = (
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json"
)
ALPACA_DATA_URL = "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json"
OLLAMA_URL = "http://localhost:11434/api/chat"
FIELDS = ("instruction", "input", "output")

# -- 7.2 the dataset ---------------------------------------------------------------------------------------


def validate_instruction_data(data, source: str = "the data") -> list[dict]:
    """Return `data` if it is a list of entries with string fields `instruction`, `input` and `output`.

    Otherwise raise a ValueError naming the first entry at fault and the field it lacks, so a broken
    file fails here rather than as a KeyError deep inside a training loop.
    """
    if not isinstance(data, list):
        raise ValueError(f"{source} should be a JSON list of entries, not a {type(data).__name__}.")
    if not data:
        raise ValueError(f"{source} holds no entries.")
    for index, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise ValueError(f"entry {index} of {source} is a {type(entry).__name__}, not an object with fields "
                             f"{', '.join(FIELDS)}.")
        missing = [field for field in FIELDS if field not in entry]
        if missing:
            raise ValueError(f"entry {index} of {source} has no {', '.join(repr(f) for f in missing)} field "
                             f"(it has {sorted(entry)}). Every entry needs {', '.join(FIELDS)}; use an empty "
                             "string for an entry without input.")
        wrong = [field for field in FIELDS if not isinstance(entry[field], str)]
        if wrong:
            raise ValueError(f"entry {index} of {source}: the field {wrong[0]!r} should be a string, not "
                             f"{type(entry[wrong[0]]).__name__}.")
    return data


def load_instruction_data(path: str | os.PathLike = INSTRUCTION_DATA_PATH) -> list[dict]:
    """The shipped instruction dataset (or another JSON file in the same format), checked.

    The shipped file is also checked against its sha256 in `shared/data/SHA256SUMS`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no instruction data at {path}. The shipped file is made by "
                                "`python -m shared.instruction_data`.")
    if path.resolve() == INSTRUCTION_DATA_PATH.resolve():
        text = read_shipped_file(INSTRUCTION_DATA).decode("utf-8")  # refuses a corrupt or edited file
        return validate_instruction_data(json.loads(text), str(path))
    return _read_checked_json(path)


def _read_checked_json(path: Path) -> list[dict]:
    """A JSON file of instruction entries, checked; an error names the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8 "
                         "JSON.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).") from None
    return validate_instruction_data(data, str(path))


def download_and_load_file(file_path: str | os.PathLike, url: str = INSTRUCTION_DATA_URL) -> list[dict]:
    """Download an instruction dataset (the book's by default) to `file_path` once, then load it.

    - Cached: an existing `file_path` that holds valid entries is used as is.
    - Checked, then atomic: the bytes arrive in `file_path.part`; only when they parse as a JSON list of
      entries with `instruction`, `input` and `output` are they renamed into place, so `file_path` is
      never half-written. (No published SHA-256 of the book's file could be found offline, so the
      check is of its structure, not its hash.)
    """
    path = Path(file_path)
    if path.exists():
        try:
            return _read_checked_json(path)
        except ValueError as err:
            print(f"the cached {path} fails its check ({err}); downloading it again.")
            path.unlink()
    try:  # a small file: start afresh rather than resume
        download(url, path, progress=False, verify=_read_checked_json, resume=False)
    except ConnectionError as err:
        detail = err.__cause__ if err.__cause__ is not None else err
        raise ConnectionError(
            f"could not download {url} ({detail}). If you are offline, download the file by hand to {path}, "
            "or use the dataset shipped with the project: load_instruction_data()."
        ) from err
    except ValueError as err:
        raise ValueError(f"the download of {url} is not an instruction dataset and was deleted. "
                         f"{err.__cause__ or err}") from err
    return _read_checked_json(path)


def split_data(data: Sequence, train_fraction: float = 0.85, test_fraction: float = 0.10):
    """The book's split, by position: the first 85% for training, the next 10% for testing, the rest for validation."""
    train_portion = int(len(data) * train_fraction)
    test_portion = int(len(data) * test_fraction)
    train_data = data[:train_portion]
    test_data = data[train_portion:train_portion + test_portion]
    val_data = data[train_portion + test_portion:]
    return train_data, test_data, val_data


def format_input(entry: Mapping[str, str]) -> str:
    """The Alpaca-style prompt: a fixed preamble, the instruction, and the input when there is one."""
    instruction_text = (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


RESPONSE_HEADER = "\n\n### Response:\n"


def format_response(entry: Mapping[str, str]) -> str:
    """What follows the prompt in training: the response header and the desired output."""
    return f"{RESPONSE_HEADER}{entry['output']}"


# -- 7.3 batches ---------------------------------------------------------------------------------------------


class InstructionDataset(Dataset):
    """The book's dataset: each entry formatted (prompt + response) and tokenized once, up front.

    An item is the list of token ids. With `return_prompt_length=True` it is `(prompt_length, ids)`,
    where the first `prompt_length` ids are the prompt (`format_input`), which `custom_collate_fn`
    can mask (exercise 7.2). With `max_length` (the model's context length), an entry that does not
    fit raises a ValueError naming it, instead of an error later in training.
    """

    def __init__(self, data, tokenizer, max_length: int | None = None, return_prompt_length: bool = False):
        self.data = validate_instruction_data(data)
        self.return_prompt_length = return_prompt_length
        self.encoded_texts, self.prompt_lengths = [], []
        for index, entry in enumerate(data):
            prompt = format_input(entry)
            token_ids = tokenizer.encode(prompt + format_response(entry))
            if max_length is not None and len(token_ids) > max_length:
                raise ValueError(
                    f"entry {index} is {len(token_ids)} tokens long, more than max_length={max_length} (the "
                    f"model's context): {entry['instruction'][:40]!r}... Shorten or drop it, or pass "
                    "allowed_max_length to custom_collate_fn to cut such entries off (losing their end)."
                )
            self.encoded_texts.append(token_ids)
            self.prompt_lengths.append(len(tokenizer.encode(prompt)))

    def __getitem__(self, index):
        if self.return_prompt_length:
            return self.prompt_lengths[index], self.encoded_texts[index]
        return self.encoded_texts[index]

    def __len__(self) -> int:
        return len(self.encoded_texts)


def custom_collate_fn(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None, device="cpu",
                      mask_instruction=False):
    """Pad a batch of token-id lists into (inputs, targets) tensors for next-token training.

    Each sequence gets one end token (`pad_token_id`, <|endoftext|>) and then more of them up to the
    longest sequence + 1; the inputs drop the last position, the targets the first (shifted by one).
    The end token stays a target, so the model learns to stop; the padding after it becomes
    `ignore_index`, which the cross-entropy loss skips. `allowed_max_length` cuts every row to that
    many tokens. With `mask_instruction=True` the items are `(prompt_length, ids)` and the targets
    inside the prompt become `ignore_index` too, so only the response is learned.
    """
    if len(batch) == 0:
        raise ValueError("the batch is empty: give custom_collate_fn at least one list of token ids.")
    if mask_instruction and not all(isinstance(item, tuple) for item in batch):
        raise ValueError("mask_instruction=True needs items (prompt_length, token_ids): build the dataset "
                         "with InstructionDataset(..., return_prompt_length=True).")
    items = [item if isinstance(item, tuple) else (0, item) for item in batch]
    batch_max_length = max(len(token_ids) + 1 for _, token_ids in items)  # room for one end token

    inputs_lst, targets_lst = [], []
    for prompt_length, token_ids in items:
        padded = list(token_ids) + [pad_token_id] * (batch_max_length - len(token_ids))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        targets[len(token_ids):] = ignore_index  # every padding target after the end token
        if mask_instruction:
            targets[:prompt_length - 1] = ignore_index  # targets that are prompt tokens
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)


# -- 7.7 responses ---------------------------------------------------------------------------------------------


def extract_response(generated_text: str, input_text: str) -> str:
    """The model's answer: the text generated after `input_text`, without the response header, trimmed."""
    response_text = generated_text[len(input_text):]
    response_text = response_text.split("<|endoftext|>")[0]
    return response_text.replace("### Response:", "").strip()


def generate_response(model, tokenizer, entry: Mapping[str, str], max_new_tokens: int = 35) -> str:
    """Greedy answer of `model` to one entry: prompt + response header in, text up to <|endoftext|> out."""
    return generate_responses(model, tokenizer, [entry], max_new_tokens)[0]


def generate_responses(model, tokenizer, entries: Sequence[Mapping[str, str]], max_new_tokens: int = 35,
                       batch_size: int = 32, prompt_fn: Callable[[Mapping[str, str]], str] | None = None) -> list[str]:
    """Greedy answers of `model` to `entries`, in order, in eval mode (no dropout).

    The prompts are answered `batch_size` at a time, shortest first, by `generate_batch`: it pads
    them on the left and hides the padding, so each gets the answer it would get alone, several
    times faster. An answer stops at the end token, after `max_new_tokens`, or when it would push
    its prompt out of the model's context. `prompt_fn(entry)` gives the text the model continues; by
    default the Alpaca prompt and response header, `format_input(entry) + RESPONSE_HEADER`
    (exercise 7.1 passes another prompt style's).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: answer at least 1 entry at a time, e.g. 32.")
    model.eval()
    context_size = model.cfg["context_length"]
    prompts = [prompt_fn(entry) if prompt_fn else format_input(entry) + RESPONSE_HEADER for entry in entries]
    encoded = [tokenizer.encode(prompt, allowed_special={"<|endoftext|>"}) for prompt in prompts]
    for index, token_ids in enumerate(encoded):
        if len(token_ids) >= context_size:
            raise ValueError(f"the prompt of entry {index} ({entries[index]['instruction'][:40]!r}...) is "
                             f"{len(token_ids)} tokens long, which leaves no room for an answer in the model's "
                             f"context of {context_size} tokens: shorten its input.")

    responses = [""] * len(entries)
    order = sorted(range(len(entries)), key=lambda i: len(encoded[i]))  # similar lengths: little padding
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        # Never push a prompt out of view: each answer may take at most its prompt's free context.
        limits = [min(max_new_tokens, context_size - len(encoded[i])) for i in chunk]
        continuations = generate_batch(model, [encoded[i] for i in chunk], max(limits), context_size,
                                       eos_id=tokenizer.eot_token)
        for i, new_ids, limit in zip(chunk, continuations, limits):
            responses[i] = extract_response(prompts[i] + tokenizer.decode(new_ids[:limit]), prompts[i])
    return responses


def save_responses(entries: Sequence[Mapping[str, str]], responses: Sequence[str], path: str | os.PathLike,
                   key: str = "model_response") -> None:
    """Write the entries, each with its response under `key`, as JSON (atomically: whole or not at all)."""
    if len(entries) != len(responses):
        raise ValueError(f"{len(entries)} entries but {len(responses)} responses: give one response per entry.")
    records = [{**entry, key: response} for entry, response in zip(entries, responses)]
    atomic_write_text(path, json.dumps(records, indent=4) + "\n")


# -- 7.8 scoring ---------------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """An answer in a comparable form: spaces collapsed, case folded, quotes and final punctuation dropped."""
    text = " ".join(text.split()).casefold()
    return text.strip("\"'").rstrip(".!?;:,").strip()


def exact_match(response: str, output: str) -> float:
    """1.0 if the response is the correct output (after `normalize_answer`), else 0.0."""
    return float(normalize_answer(response) == normalize_answer(output))


def word_f1(response: str, output: str) -> float:
    """Partial credit: the F1 score of the words the response shares with the correct output (0 to 1).

    Precision is the share of the response's words that are in the output, recall the share of the
    output's words that are in the response (each word counted as often as it occurs), as in SQuAD.
    """
    predicted = normalize_answer(response).replace(",", " ").replace(";", " ").split()
    correct = normalize_answer(output).replace(",", " ").replace(";", " ").split()
    common = sum((Counter(predicted) & Counter(correct)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(correct)
    return 2 * precision * recall / (precision + recall)


def score_responses(entries: Sequence[Mapping[str, str]], responses: Sequence[str],
                    metric: Callable[[str, str], float] = exact_match) -> dict[str, float]:
    """The mean of `metric(response, output)` (exact match by default) overall, under "all", and per task.

    An entry's task is its `task` field; entries without one count in "all" only.
    """
    if len(entries) != len(responses):
        raise ValueError(f"{len(entries)} entries but {len(responses)} responses: give one response per entry.")
    if not entries:
        raise ValueError("no entries to score.")
    values: dict[str, list[float]] = {"all": []}
    for entry, response in zip(entries, responses):
        value = metric(response, entry["output"])
        values["all"].append(value)
        if "task" in entry:
            values.setdefault(entry["task"], []).append(value)
    return {name: sum(scores) / len(scores) for name, scores in values.items()}


# -- 7.8 an LLM as judge (optional: needs an Ollama server) ---------------------------------------------------------


def query_model(prompt: str, model: str = "llama3", url: str = OLLAMA_URL, timeout: float = 120.0) -> str:
    """Ask a model served by Ollama (https://ollama.com) and return its whole reply.

    Deterministic settings (seed 123, temperature 0), as in the book. Needs `ollama serve` running and
    the model pulled (`ollama pull llama3`); nothing in the notebooks or tests depends on it.
    """
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
    }
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    reply = []
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for line in response:  # Ollama streams one JSON object per line
                if line.strip():
                    reply.append(json.loads(line)["message"]["content"])
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"no Ollama server answered at {url} ({reason}). The LLM judge is optional: install Ollama from "
            f"https://ollama.com, start it with `ollama serve` and run `ollama pull {model}`; or score the "
            "answers without it, with score_responses."
        ) from err
    return "".join(reply)


def generate_model_scores(entries: Sequence[Mapping[str, str]], json_key: str = "model_response",
                          model: str = "llama3", url: str = OLLAMA_URL) -> list[int]:
    """Ask the judge to score each entry's response (under `json_key`) from 0 to 100 against the correct output.

    Replies that are not a whole number are reported and skipped, as in the book.
    """
    scores = []
    for entry in entries:
        prompt = (
            f"Given the input `{format_input(entry)}` "
            f"and correct output `{entry['output']}`, "
            f"score the model response `{entry[json_key]}`"
            " on a scale from 0 to 100, where 100 is the best score. "
            "Respond with the integer number only."
        )
        reply = query_model(prompt, model, url)
        try:
            scores.append(int(reply.strip()))
        except ValueError:
            print(f"could not read a score in the judge's reply: {reply!r}")
    return scores
