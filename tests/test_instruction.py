"""Chapter 7: prompts, batches (padding, -100, truncation, masking), scoring, errors, and a tiny finetuning run."""

import functools
import io
import json
import urllib.error
import urllib.request

import pytest
import torch
from torch.utils.data import DataLoader

import shared.instruction as instruction
from shared.instruction import (
    INSTRUCTION_DATA_URL,
    InstructionDataset,
    custom_collate_fn,
    download_and_load_file,
    exact_match,
    extract_response,
    format_input,
    generate_response,
    generate_responses,
    load_instruction_data,
    normalize_answer,
    query_model,
    save_responses,
    score_responses,
    split_data,
    validate_instruction_data,
    word_f1,
)
from shared.pretraining import generate
from shared.tokenization import BPETokenizer, get_gpt2_tokenizer
from shared.transformer import GPTModel

PAD = 50256
IGNORE = -100
ENTRY = {"instruction": "Give the first word of this sentence.", "input": "It rained.", "output": "It"}


# -- the prompt -------------------------------------------------------------------------------------


def test_format_input_with_and_without_input():
    preamble = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                "the request.")
    assert format_input(ENTRY) == (f"{preamble}\n\n### Instruction:\nGive the first word of this sentence."
                                   "\n\n### Input:\nIt rained.")
    no_input = {**ENTRY, "input": ""}
    assert format_input(no_input) == f"{preamble}\n\n### Instruction:\nGive the first word of this sentence."


def test_split_data_follows_the_book():
    train, test, val = split_data(list(range(20)))
    assert (train, test, val) == (list(range(17)), [17, 18], [19])


# -- bad data gets a clear error --------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    ({"instruction": "x"}, "should be a JSON list of entries, not a dict"),
    ([], "holds no entries"),
    ([ENTRY, ["a", "b"]], "entry 1 of the data is a list, not an object"),
    ([ENTRY, {"instruction": "Say hi.", "output": "hi"}], "entry 1 of the data has no 'input' field.*empty string"),
    ([{**ENTRY, "output": 3}], "the field 'output' should be a string, not int"),
])
def test_broken_data_is_named(data, message):
    with pytest.raises(ValueError, match=message):
        validate_instruction_data(data)


def test_a_file_with_an_entry_missing_a_field_is_refused(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([ENTRY, {"instruction": "Say hi.", "input": ""}]))
    with pytest.raises(ValueError, match=r"entry 1 of .*data.json has no 'output' field"):
        load_instruction_data(path)
    with pytest.raises(FileNotFoundError, match="no instruction data at .*missing.json"):
        load_instruction_data(tmp_path / "missing.json")


def test_the_shipped_data_loads():
    data = load_instruction_data()
    assert len(data) == 1100 and data[0].keys() >= {"instruction", "input", "output"}


# -- batches ------------------------------------------------------------------------------------------

# The book's example batch: three sequences of lengths 5, 2 and 3.
BATCH = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]


def test_collate_pads_shifts_and_ignores_all_but_the_first_end_token():
    inputs, targets = custom_collate_fn(BATCH)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, PAD, PAD, PAD], [7, 8, 9, PAD, PAD]]
    assert targets.tolist() == [[1, 2, 3, 4, PAD], [6, PAD, IGNORE, IGNORE, IGNORE], [8, 9, PAD, IGNORE, IGNORE]]


def test_collate_keeps_end_tokens_that_belong_to_the_text():
    """Only the padding is ignored: an <|endoftext|> inside a text stays a target (the book's value test drops it)."""
    _, targets = custom_collate_fn([[1, PAD, 2], [3]])
    assert targets.tolist() == [[PAD, 2, PAD], [PAD, IGNORE, IGNORE]]


def test_collate_with_another_pad_id_and_ignore_index():
    inputs, targets = custom_collate_fn([[5, 6], [7]], pad_token_id=0, ignore_index=-1)
    assert inputs.tolist() == [[5, 6], [7, 0]] and targets.tolist() == [[6, 0], [0, -1]]


def test_collate_truncates_to_allowed_max_length():
    inputs, targets = custom_collate_fn(BATCH, allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, PAD], [7, 8, 9]]
    assert targets.tolist() == [[1, 2, 3], [6, PAD, IGNORE], [8, 9, PAD]]


def test_collate_masks_the_instruction():
    # (prompt_length, ids): the first prompt_length ids are the prompt; their targets are ignored.
    inputs, targets = custom_collate_fn([(3, [0, 1, 2, 3, 4]), (1, [5, 6])], mask_instruction=True)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, PAD, PAD, PAD]]
    assert targets.tolist() == [[IGNORE, IGNORE, 3, 4, PAD], [6, PAD, IGNORE, IGNORE, IGNORE]]


def test_collate_errors():
    with pytest.raises(ValueError, match="mask_instruction=True needs items .*return_prompt_length=True"):
        custom_collate_fn(BATCH, mask_instruction=True)
    with pytest.raises(ValueError, match="the batch is empty"):
        custom_collate_fn([])


def test_the_dataset_tokenizes_prompt_and_response_and_finds_the_prompt():
    tokenizer = get_gpt2_tokenizer()
    dataset = InstructionDataset([ENTRY], tokenizer, return_prompt_length=True)
    prompt_length, ids = dataset[0]
    assert tokenizer.decode(ids) == format_input(ENTRY) + "\n\n### Response:\nIt"
    assert ids[:prompt_length] == tokenizer.encode(format_input(ENTRY))
    assert InstructionDataset([ENTRY], tokenizer)[0] == ids and len(dataset) == 1


def test_an_entry_longer_than_the_context_is_named():
    long_entry = {**ENTRY, "input": "word " * 200}
    with pytest.raises(ValueError, match=r"entry 1 is \d+ tokens long, more than max_length=128"):
        InstructionDataset([ENTRY, long_entry], get_gpt2_tokenizer(), max_length=128)


# -- responses and scores -------------------------------------------------------------------------------


def test_extract_response():
    prompt = format_input(ENTRY) + "\n\n### Response:\n"
    assert extract_response(prompt + " It.<|endoftext|>more", prompt) == "It."
    assert extract_response("prompt### Response:\nYes", "prompt") == "Yes"


def test_normalize_and_score():
    assert normalize_answer('  "Pride   and prejudice." ') == "pride and prejudice"
    entries = [{**ENTRY, "task": "a"}, {**ENTRY, "task": "a"}, {**ENTRY, "output": "Emma", "task": "b"}, ENTRY]
    scores = score_responses(entries, ["it", "They", "Emma!", "It."])
    assert scores == {"all": 0.75, "a": 0.5, "b": 1.0}
    with pytest.raises(ValueError, match="4 entries but 3 responses"):
        score_responses(entries, ["it"] * 3)


def test_word_f1_gives_partial_credit():
    assert word_f1("She was happy.", "She was happy") == 1.0
    assert word_f1("she was", "She was very happy.") == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 1/2
    assert word_f1("the the the", "the cat") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert word_f1("", "Emma") == 0.0 and exact_match("emma.", "Emma") == 1.0
    entries = [{**ENTRY, "output": "a b c d", "task": "r"}, {**ENTRY, "output": "x", "task": "w"}]
    assert score_responses(entries, ["a b", "x"], metric=word_f1) == pytest.approx(
        {"all": (2 / 3 + 1) / 2, "r": 2 / 3, "w": 1.0})


def test_save_responses(tmp_path):
    path = tmp_path / "responses.json"
    save_responses([ENTRY], ["It"], path)
    assert json.loads(path.read_text()) == [{**ENTRY, "model_response": "It"}]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_prompt_that_fills_the_context_is_refused():
    torch.manual_seed(0)
    model = GPTModel({"vocab_size": 50257, "context_length": 16, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
                      "drop_rate": 0.0, "qkv_bias": False})
    with pytest.raises(ValueError, match="leaves no room for an answer in the model's context of 16 tokens"):
        generate_response(model, get_gpt2_tokenizer(), ENTRY)


def test_generate_responses_prompts_with_prompt_fn(monkeypatch):
    """By default the Alpaca prompt and response header; with prompt_fn, the text it gives (exercise 7.1)."""
    torch.manual_seed(0)
    model = GPTModel({"vocab_size": 50257, "context_length": 128, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
                      "drop_rate": 0.0, "qkv_bias": False})
    tokenizer = get_gpt2_tokenizer()
    seen = []

    def fake_generate_batch(model, prompts, max_new_tokens, context_size, **kwargs):
        seen.append(tokenizer.decode(prompts[0]))
        return [[] for _ in prompts]  # every answer ends at once

    monkeypatch.setattr(instruction, "generate_batch", fake_generate_batch)
    generate_responses(model, tokenizer, [ENTRY], max_new_tokens=2)
    generate_responses(model, tokenizer, [ENTRY], max_new_tokens=2,
                       prompt_fn=lambda e: f"<|user|>\n{e['instruction']}\n{e['input']}\n<|assistant|>\n")
    assert seen[0] == format_input(ENTRY) + "\n\n### Response:\n"
    assert seen[1] == f"<|user|>\n{ENTRY['instruction']}\n{ENTRY['input']}\n<|assistant|>\n"


def test_batched_responses_equal_each_entry_answered_alone():
    """Prompts of different lengths share batches (left-padded); one near the context end gets a shorter answer."""
    torch.manual_seed(0)
    context = 64
    model = GPTModel({"vocab_size": 50257, "context_length": context, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
                      "drop_rate": 0.0, "qkv_bias": False})
    tokenizer = get_gpt2_tokenizer()
    entries = [{**ENTRY, "input": " ".join(["rain"] * n)} for n in (0, 1, 5, 2, 12, 16, 3)]
    lengths = [len(tokenizer.encode(format_input(e) + "\n\n### Response:\n")) for e in entries]
    assert len(set(lengths)) == len(entries) and context - 8 < max(lengths) < context

    def alone(entry):  # the book's way: one prompt, never pushed out of the context
        prompt = format_input(entry) + "\n\n### Response:\n"
        ids = tokenizer.encode(prompt)
        out = generate(model, torch.tensor([ids]), min(8, context - len(ids)), context, eos_id=tokenizer.eot_token)
        return extract_response(prompt + tokenizer.decode(out[0, len(ids):].tolist()), prompt)

    batched = generate_responses(model, tokenizer, entries, max_new_tokens=8, batch_size=3)
    assert batched == [alone(e) for e in entries]
    assert generate_responses(model, tokenizer, entries, max_new_tokens=8, batch_size=1) == batched
    with pytest.raises(ValueError, match="batch_size=0"):
        generate_responses(model, tokenizer, entries, batch_size=0)


# -- a tiny finetuning run: the whole pipeline, measured ------------------------------------------------------


def test_finetuning_beats_the_untrained_baseline():
    """A tiny random GPT, finetuned on eight entries, answers them exactly, end token included (so it stops)."""
    data = [e for e in load_instruction_data() if e["task"] == "first_word"][:8]
    text = "".join(format_input(e) + "\n\n### Response:\n" + e["output"] for e in data)
    tokenizer = BPETokenizer.train(text, 400, special_tokens=["<|endoftext|>"])
    torch.manual_seed(123)
    model = GPTModel({"vocab_size": tokenizer.vocab_size, "context_length": 96, "emb_dim": 64, "n_heads": 2,
                      "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False})
    collate = functools.partial(custom_collate_fn, pad_token_id=tokenizer.eot_token)
    loader = DataLoader(InstructionDataset(data, tokenizer, max_length=96), batch_size=8, collate_fn=collate)

    before = score_responses(data, generate_responses(model, tokenizer, data, max_new_tokens=6))["all"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(40):
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
            loss.backward()
            optimizer.step()
    responses = generate_responses(model, tokenizer, data, max_new_tokens=6)
    after = score_responses(data, responses)["all"]
    assert before == 0.0
    assert [generate_response(model, tokenizer, e, max_new_tokens=6) for e in data] == responses, (
        "answering prompts in one batch changed the answers"
    )
    assert after >= 0.75, f"exact match {after} after finetuning; responses {responses}"


# -- downloads and the judge, offline --------------------------------------------------------------------------


class FakeResponse(io.BytesIO):
    status = 200
    headers = {}


def test_download_and_load_file_caches_and_checks(monkeypatch, tmp_path):
    requests = []

    def urlopen(request, timeout=None):
        requests.append(request.full_url)
        return FakeResponse(json.dumps([ENTRY]).encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    path = tmp_path / "instruction-data.json"
    assert download_and_load_file(path) == [ENTRY]
    assert download_and_load_file(path) == [ENTRY]  # cached: no second request
    assert requests == [INSTRUCTION_DATA_URL] and not path.with_name(path.name + ".part").exists()


def test_a_download_that_is_not_instruction_data_is_deleted(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: FakeResponse(b"<html>login</html>"))
    path = tmp_path / "instruction-data.json"
    with pytest.raises(ValueError, match="is not an instruction dataset and was deleted"):
        download_and_load_file(path)
    assert not path.exists() and not path.with_name(path.name + ".part").exists()


def test_offline_download_says_what_to_do(monkeypatch, tmp_path):
    def urlopen(request, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(ConnectionError, match="use the dataset shipped with the project: load_instruction_data"):
        download_and_load_file(tmp_path / "instruction-data.json")


def test_the_judge_without_a_server_says_how_to_get_one(monkeypatch):
    def urlopen(request, timeout=None):
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(ConnectionError, match="no Ollama server answered.*ollama pull llama3"):
        query_model("Hello")
