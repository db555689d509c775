"""Checks for chapter 7's exercises (instruction finetuning): Phi-3 prompts, masked targets, a new dataset, LoRA."""

from __future__ import annotations

import torch

from shared.checks.common import correct, not_attempted
from shared.instruction import (
    format_input,
    generate_responses,
    load_instruction_data,
    score_responses,
    split_data,
    validate_instruction_data,
)
from shared.lora import LinearWithLoRA
from shared.pretrained import load_austen_gpt

EXERCISE_7_1_MIN_SCORE = 0.15  # exact match on the 110 test entries, prompted in Phi-3's style
PHI3_RESPONSE_HEADER = "\n<|assistant|>\n"
EXERCISE_7_4_MIN_SCORE = 0.25  # exact match on the 22 first_word test entries (the pretrained model: 0%)

PHI3_EXAMPLES = (
    {"instruction": "Give the first word of this sentence.", "input": "It rained all day.", "output": "It"},
    {"instruction": "Name a novel by Jane Austen.", "input": "", "output": "Emma"},
)


def check_exercise_7_1(format_input_phi3, phi3_model=None) -> None:
    """Exercise 7.1: Phi-3's prompt style, and a model finetuned with it that answers prompts in that style.

    The prompt is "<|user|>\\n{instruction}\\n{input}" (no input line when the input is empty). The model
    is scored on the test entries, prompted in Phi-3's style: the pretrained model, and the model the
    chapter finetunes on Alpaca prompts, get about 0% there, so only a model finetuned in this style passes.
    """
    if not_attempted("7.1", format_input_phi3):
        return
    assert callable(format_input_phi3), "format_input_phi3 should be a function: entry (a dict) -> prompt text"
    for entry in PHI3_EXAMPLES:
        expected = f"<|user|>\n{entry['instruction']}" + (f"\n{entry['input']}" if entry["input"] else "")
        got = format_input_phi3(entry)
        assert isinstance(got, str), f"format_input_phi3 returned a {type(got).__name__}, not the prompt text"
        assert got == expected, (
            f"for {entry} the prompt is {got!r}; Phi-3's style gives {expected!r}: '<|user|>', a newline, the "
            "instruction, and only if the input is not empty a newline and the input (no '###' headers, no preamble)"
        )
    saved = len(format_input(PHI3_EXAMPLES[0])) - len(format_input_phi3(PHI3_EXAMPLES[0]))
    if phi3_model is None:
        print(f"Exercise 7.1: format_input_phi3 is right ({saved} characters shorter than Alpaca's prompt), but the "
              "exercise is not finished: finetune a model on the training entries in Phi-3's style and pass it as "
              "phi3_model.")
        return
    assert isinstance(phi3_model, torch.nn.Module) and hasattr(phi3_model, "cfg"), (
        f"phi3_model is a {type(phi3_model).__name__}; pass the finetuned GPTModel (load_austen_gpt()'s model, "
        "trained on the training entries in Phi-3's style)"
    )
    _, tokenizer = load_austen_gpt()
    _, test_data, _ = split_data(load_instruction_data())
    was_training = phi3_model.training
    responses = generate_responses(phi3_model, tokenizer, test_data, max_new_tokens=20,
                                   prompt_fn=lambda entry: format_input_phi3(entry) + PHI3_RESPONSE_HEADER)
    phi3_model.train(was_training)
    score = score_responses(test_data, responses)["all"]
    assert score >= EXERCISE_7_1_MIN_SCORE, (
        f"prompted in Phi-3's style, the model answers {score:.0%} of the {len(test_data)} test entries exactly, "
        f"below {EXERCISE_7_1_MIN_SCORE:.0%} (the pretrained model, and the chapter's model finetuned on Alpaca "
        "prompts, get about 0% in this style): finetune a freshly loaded model on the training entries formatted "
        "as format_input_phi3(entry) + '\\n<|assistant|>\\n' + entry['output'], for two epochs or more"
    )
    correct("7.1", f"each prompt is {saved} characters shorter than Alpaca's, and prompted in Phi-3's style the "
             f"model answers {score:.0%} of the test entries exactly.")


def check_exercise_7_2(collate_fn) -> None:
    """Exercise 7.2: a collate function for items (prompt_length, token_ids) whose prompt targets are -100."""
    if not_attempted("7.2", collate_fn):
        return
    pad, ignore = 50256, -100
    batch = [(3, [10, 11, 12, 13, 14]), (2, [20, 21, 22])]
    expected_inputs = [[10, 11, 12, 13, 14], [20, 21, 22, pad, pad]]
    expected_targets = [[ignore, ignore, 13, 14, pad], [ignore, 22, pad, ignore, ignore]]
    result = collate_fn(batch)
    assert isinstance(result, tuple) and len(result) == 2, "collate_fn should return (inputs, targets)"
    inputs, targets = (torch.as_tensor(t).tolist() for t in result)
    assert inputs == expected_inputs, (
        f"the inputs are {inputs}; expected {expected_inputs}: pad each sequence with 50256 to the longest + 1, "
        "then drop the last position. Masking changes the targets only."
    )
    if targets == [[11, 12, 13, 14, pad], [21, 22, pad, ignore, ignore]]:
        raise AssertionError("the targets are not masked at all: set the targets of the prompt tokens to -100")
    assert targets == expected_targets, (
        f"the targets are {targets}; expected {expected_targets}. The first prompt_length tokens are the prompt; "
        "target i is token i + 1, so the targets to mask are the first prompt_length - 1 (the last prompt token's "
        "target is the first response token, which stays). After the first end token the padding is -100 too."
    )
    correct("7.2", "only the response tokens (and the end token) are now learned; the prompt still goes in.")


def _second_word(sentence: str) -> str | None:
    words = [w.strip(",;:.!?\"'") for w in sentence.split()]
    words = [w for w in words if w]
    return words[1] if len(words) > 1 else None


def check_exercise_7_3(new_data) -> None:
    """Exercise 7.3 (offline): a new instruction dataset, "Give the second word of this sentence.", 100+ entries."""
    if not_attempted("7.3", new_data):
        return
    try:
        validate_instruction_data(new_data, "new_data")
    except ValueError as err:
        raise AssertionError(str(err)) from err
    assert len(new_data) >= 100, f"new_data has {len(new_data)} entries; make at least 100"
    inputs = [entry["input"] for entry in new_data]
    assert len(set(inputs)) == len(inputs), "some sentences appear twice: use each sentence once"
    for index, entry in enumerate(new_data):
        assert "second word" in entry["instruction"].lower(), (
            f"entry {index}: the instruction {entry['instruction']!r} should ask for the second word"
        )
        n_words = len(entry["input"].split())
        assert 2 <= n_words <= 20, (
            f"entry {index}: the input has {n_words} words; use sentences of 2 to 20 words, so that prompt and "
            "answer fit the model's 128-token context"
        )
        expected = _second_word(entry["input"])
        assert entry["output"] == expected, (
            f"entry {index}: the output for {entry['input']!r} is {entry['output']!r}; its second word is "
            f"{expected!r} (without the punctuation around it)"
        )
    correct("7.3", f"{len(new_data)} entries in the Alpaca format, every answer right.")


def check_exercise_7_4(lora_model) -> None:
    """Exercise 7.4: the pretrained Austen GPT, instruction-finetuned through LoRA layers only."""
    if not_attempted("7.4", lora_model):
        return
    lora_layers = [m for m in lora_model.modules() if isinstance(m, LinearWithLoRA)]
    assert lora_layers, ("the model has no LoRA layers: freeze its parameters, then call "
                         "replace_linear_with_lora(model, rank=16, alpha=16) before training")
    trainable = [name for name, p in lora_model.named_parameters() if p.requires_grad]
    not_lora = [name for name in trainable if ".lora." not in f".{name}"]
    assert not not_lora, (
        f"{len(not_lora)} of the model's own parameters still train (e.g. {not_lora[0]}): set requires_grad = False "
        "on every parameter before replace_linear_with_lora, so that only the LoRA matrices A and B train"
    )
    reference, tokenizer = load_austen_gpt()
    own = {name.replace(".linear.", ".").replace("linear.", ""): p for name, p in lora_model.named_parameters()
           if ".lora." not in f".{name}"}
    for name, expected in reference.named_parameters():
        assert name in own, f"the model has no parameter {name}: start from load_austen_gpt()'s model"
        assert torch.equal(own[name].detach().cpu(), expected), (
            f"{name} differs from the pretrained model's: with LoRA the pretrained weights stay frozen. Reload the "
            "model, freeze it, add LoRA, and train (do not merge the LoRA matrices before this check)"
        )
    assert any(layer.lora.B.abs().sum() > 0 for layer in lora_layers), (
        "every LoRA matrix B is still zero, so the model computes what the pretrained one did: train it"
    )
    _, test_data, _ = split_data(load_instruction_data())
    entries = [e for e in test_data if e["task"] == "first_word"]
    was_training = lora_model.training
    score = score_responses(entries, generate_responses(lora_model, tokenizer, entries, max_new_tokens=8))["all"]
    lora_model.train(was_training)
    assert score >= EXERCISE_7_4_MIN_SCORE, (
        f"exact match on the first_word test entries is {score:.0%}, below {EXERCISE_7_4_MIN_SCORE:.0%} (the "
        "pretrained model gets 0%): train longer or with a larger learning rate (LoRA usually needs a larger one "
        "than full finetuning, e.g. 5e-3)"
    )
    n_trainable = sum(p.numel() for p in lora_model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in lora_model.parameters())
    correct("7.4", f"{n_trainable:,} of {n_total:,} parameters trained ({n_trainable / n_total:.1%}); "
             f"first_word exact match {score:.0%}.")
