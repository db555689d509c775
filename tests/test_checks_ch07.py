"""Chapter 7's exercise checks accept a right answer and reject wrong ones with a useful message."""

import copy
import functools

import pytest
import torch

import shared.checks.ch07 as checks
from shared.checks import check_exercise_7_1, check_exercise_7_2, check_exercise_7_3, check_exercise_7_4
from shared.corpus import load_novel
from shared.instruction import custom_collate_fn, format_input
from shared.instruction_data import clean_sentences
from shared.lora import replace_linear_with_lora
from shared.tokenization import get_gpt2_tokenizer
from shared.transformer import GPTModel


@pytest.mark.parametrize("check", [check_exercise_7_1, check_exercise_7_2, check_exercise_7_3, check_exercise_7_4])
def test_an_untouched_exercise_is_not_attempted(check, capsys):
    check(None)
    assert "not attempted yet" in capsys.readouterr().out


# -- 7.1 --------------------------------------------------------------------------------------------


def format_input_phi3(entry):
    return f"<|user|>\n{entry['instruction']}" + (f"\n{entry['input']}" if entry["input"] else "")


@pytest.mark.parametrize("wrong", [
    format_input,  # still Alpaca
    lambda entry: f"<|user|>\n{entry['instruction']}\n{entry['input']}",  # an empty input line
    lambda entry: f"<|user|>\n{entry['instruction']}\n{entry['input']}\n<|assistant|>\n",  # response header too
])
def test_7_1_rejects_other_prompts(wrong):
    with pytest.raises(AssertionError, match="Phi-3's style gives"):
        check_exercise_7_1(wrong)


def test_7_1_with_the_prompts_only_says_the_exercise_is_not_finished(capsys):
    check_exercise_7_1(format_input_phi3)
    out = capsys.readouterr().out
    assert "format_input_phi3 is right" in out and "not finished" in out and "correct!" not in out


class AnswersOneStyle(torch.nn.Module):
    """Stands in for a finetuned model: it answers every entry right, but only when prompted in its own style."""

    def __init__(self, marker):
        super().__init__()
        self.cfg = {"context_length": 128}
        self.marker = marker


def answers_in_its_style(model, tokenizer, entries, max_new_tokens=35, batch_size=32, prompt_fn=None):
    prompts = [prompt_fn(e) if prompt_fn else format_input(e) + "\n\n### Response:\n" for e in entries]
    return [e["output"] if model.marker in p else "I do not know" for e, p in zip(entries, prompts)]


def test_7_1_accepts_a_model_finetuned_on_phi3_prompts(monkeypatch, tiny_pretrained, capsys):
    monkeypatch.setattr(checks, "generate_responses", answers_in_its_style)
    check_exercise_7_1(format_input_phi3, AnswersOneStyle("<|user|>"))
    out = capsys.readouterr().out
    assert "Exercise 7.1: correct!" in out and "answers 100% of the test entries" in out


def test_7_1_rejects_models_that_do_not_answer_phi3_prompts(monkeypatch, tiny_pretrained):
    with pytest.raises(AssertionError, match="prompted in Phi-3's style, the model answers 0% of the 110"):
        check_exercise_7_1(format_input_phi3, tiny_pretrained()[0])  # a model that was never finetuned
    monkeypatch.setattr(checks, "generate_responses", answers_in_its_style)
    with pytest.raises(AssertionError, match="answers 0% of the 110 test entries exactly, below 15%"):
        check_exercise_7_1(format_input_phi3, AnswersOneStyle("### Instruction:"))  # finetuned on Alpaca prompts
    with pytest.raises(AssertionError, match="pass the finetuned GPTModel"):
        check_exercise_7_1(format_input_phi3, "my model")


# -- 7.2 --------------------------------------------------------------------------------------------


def masked_collate(batch, pad_token_id=50256, ignore_index=-100):
    """An independent solution: pad, shift, mask the padding after the end token and the prompt's targets."""
    longest = max(len(ids) for _, ids in batch) + 1
    inputs, targets = [], []
    for prompt_length, ids in batch:
        padded = ids + [pad_token_id] * (longest - len(ids))
        row_targets = padded[1:]
        for i in range(len(row_targets)):
            if i >= len(ids) or i < prompt_length - 1:
                row_targets[i] = ignore_index
        inputs.append(padded[:-1])
        targets.append(row_targets)
    return torch.tensor(inputs), torch.tensor(targets)


@pytest.mark.parametrize("solution", [masked_collate, functools.partial(custom_collate_fn, mask_instruction=True)])
def test_7_2_accepts_masking(solution, capsys):
    check_exercise_7_2(solution)
    assert "Exercise 7.2: correct!" in capsys.readouterr().out


def test_7_2_rejects_no_masking():
    with pytest.raises(AssertionError, match="not masked at all"):
        check_exercise_7_2(lambda batch: custom_collate_fn([ids for _, ids in batch]))


def test_7_2_rejects_masking_one_target_too_many():
    def off_by_one(batch):
        return masked_collate([(prompt_length + 1, ids) for prompt_length, ids in batch])

    with pytest.raises(AssertionError, match="the last prompt token's target is the first response token"):
        check_exercise_7_2(off_by_one)


# -- 7.3 --------------------------------------------------------------------------------------------


def second_word_data(count=120):
    sentences = [s for s in clean_sentences(load_novel("persuasion")) if 2 <= len(s.split()) <= 20][:count]
    return [{"instruction": "Give the second word of this sentence.", "input": s,
             "output": s.split()[1].strip(",;.")} for s in sentences]


def test_7_3_accepts_a_second_word_dataset(capsys):
    check_exercise_7_3(second_word_data())
    assert "Exercise 7.3: correct!" in capsys.readouterr().out


def test_7_3_rejects_wrong_answers_few_entries_and_missing_fields():
    data = second_word_data()
    wrong = copy.deepcopy(data)
    wrong[5]["output"] = wrong[5]["input"].split()[0]
    with pytest.raises(AssertionError, match="entry 5: the output for"):
        check_exercise_7_3(wrong)
    with pytest.raises(AssertionError, match="has 50 entries; make at least 100"):
        check_exercise_7_3(data[:50])
    missing = copy.deepcopy(data)
    del missing[3]["input"]
    with pytest.raises(AssertionError, match="entry 3 of new_data has no 'input' field"):
        check_exercise_7_3(missing)
    with pytest.raises(AssertionError, match="appear twice"):
        check_exercise_7_3(data + data[:1])


# -- 7.4: on a tiny stand-in for the pretrained model ---------------------------------------------------------

TINY = {"vocab_size": 50257, "context_length": 128, "emb_dim": 16, "n_heads": 2, "n_layers": 1, "drop_rate": 0.0,
        "qkv_bias": False}


@pytest.fixture
def tiny_pretrained(monkeypatch):
    """load_austen_gpt, as chapter 7's checks see it: a tiny seeded GPT (the same each call) and GPT-2's tokenizer."""
    def load():
        torch.manual_seed(0)
        return GPTModel(TINY).eval(), get_gpt2_tokenizer()

    monkeypatch.setattr(checks, "load_austen_gpt", load)
    return load


def lora_version(load, train_b=True, freeze=True):
    model, _ = load()
    if freeze:
        for p in model.parameters():
            p.requires_grad = False
    replace_linear_with_lora(model, rank=2, alpha=2)
    if train_b:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("lora.B"):
                    p.fill_(0.01)  # stands in for training
    return model


def test_7_4_accepts_a_frozen_model_with_trained_lora(monkeypatch, tiny_pretrained, capsys):
    monkeypatch.setattr(checks, "EXERCISE_7_4_MIN_SCORE", 0.0)  # a tiny random model cannot answer
    check_exercise_7_4(lora_version(tiny_pretrained))
    assert "Exercise 7.4: correct!" in capsys.readouterr().out


def test_7_4_rejects_the_wrong_models(tiny_pretrained):
    with pytest.raises(AssertionError, match="no LoRA layers"):
        check_exercise_7_4(tiny_pretrained()[0])
    with pytest.raises(AssertionError, match="still train"):
        check_exercise_7_4(lora_version(tiny_pretrained, freeze=False))
    with pytest.raises(AssertionError, match="still zero"):
        check_exercise_7_4(lora_version(tiny_pretrained, train_b=False))
    changed = lora_version(tiny_pretrained)
    with torch.no_grad():
        changed.tok_emb.weight.add_(0.1)
    with pytest.raises(AssertionError, match="tok_emb.weight differs from the pretrained model's"):
        check_exercise_7_4(changed)


def test_7_4_rejects_a_model_that_does_not_answer(tiny_pretrained):
    with pytest.raises(AssertionError, match="exact match on the first_word test entries is 0%"):
        check_exercise_7_4(lora_version(tiny_pretrained))
