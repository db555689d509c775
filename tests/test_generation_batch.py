"""generate_batch: prompts of different lengths in one left-padded batch give each prompt its own tokens.

Also its users: chapter 7's `generate_responses` and the chat command's `continue_texts`.
"""

import contextlib

import pytest
import torch

import shared.chat as chat
import shared.transformer
from shared.attention import KVCache, LeftPadding
from shared.chat import continue_text, continue_texts
from shared.pretraining import generate, generate_batch
from shared.tokenization import get_gpt2_tokenizer
from shared.transformer import GPT_CONFIG_124M, GPTModel

CONTEXT = 16
TINY = {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": CONTEXT, "emb_dim": 16, "n_heads": 2, "n_layers": 2}
LENGTHS = [1, 5, 3, 16, 12, 15]  # one prompt fills the context: the cache is rebuilt from the first new token


@pytest.fixture(autouse=True)
def without_onednn_mode(monkeypatch):
    """oneDNN builds a kernel for each new shape (slow for these many tiny shapes) and changes no token
    (tests/test_fast_linear.py checks that); chapter 7's test in test_instruction.py runs with it."""
    monkeypatch.setattr(shared.transformer, "fast_cpu_linear", contextlib.nullcontext)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**TINY, **overrides}).eval()


def prompts_of(lengths, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, TINY["vocab_size"], (n,), generator=generator).tolist() for n in lengths]


def alone(model, prompt, max_new_tokens, **options):
    """The reference: `generate` on this one prompt, its new tokens."""
    out = generate(model, torch.tensor([prompt]), max_new_tokens, CONTEXT, **options)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_greedy_batch_equals_each_prompt_alone(use_sdpa):
    model = tiny_model(use_sdpa=use_sdpa)
    prompts = prompts_of(LENGTHS)
    expected = [alone(model, p, 12) for p in prompts]
    assert generate_batch(model, prompts, 12, CONTEXT) == expected
    assert all(len(tokens) == 12 for tokens in expected)

    # Stopping: an end token that one prompt produces early (and is not appended), others never.
    eos_id = expected[1][3]
    expected_eos = [alone(model, p, 12, eos_id=eos_id) for p in prompts]
    assert len(expected_eos[1]) <= 3 and any(len(tokens) == 12 for tokens in expected_eos)
    assert generate_batch(model, prompts, 12, CONTEXT, eos_id=eos_id) == expected_eos


def test_tensors_and_lists_give_the_same_tokens_whatever_the_padding_id():
    model = tiny_model(seed=3)
    prompts = prompts_of([2, 7, 4], seed=5)
    expected = generate_batch(model, prompts, 6, CONTEXT)
    assert generate_batch(model, [torch.tensor(p) for p in prompts], 6, CONTEXT, pad_id=50) == expected
    assert generate_batch(model, prompts, 0, CONTEXT) == [[], [], []]


def test_padded_prompts_get_the_logits_they_get_alone():
    """Positions count from each row's first real token, padding keys are hidden, and no row is NaN."""
    model = tiny_model(seed=2)
    prompts = prompts_of([2, 6], seed=4)
    padded = torch.tensor([[0] * 4 + prompts[0], prompts[1]])
    cache = KVCache(TINY["n_layers"], CONTEXT, LeftPadding(torch.tensor([4, 0])))
    with torch.no_grad():
        logits = model(padded, kv_cache=cache)
        step = model(torch.tensor([[7], [8]]), kv_cache=cache)  # one more token each, through the cache
        short = model(torch.tensor([prompts[0] + [7]]))
        long = model(torch.tensor([prompts[1] + [8]]))
    assert torch.isfinite(logits).all()  # the padding rows too: each padding query sees itself
    torch.testing.assert_close(logits[0, 4:], short[0, :2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], long[0, :6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[:, 0], torch.stack([short[0, -1], long[0, -1]]), atol=1e-5, rtol=1e-5)


def test_sampling_with_a_seed_gives_valid_repeatable_tokens():
    model = tiny_model(seed=4)
    prompts = prompts_of([3, 9, 1], seed=6)
    options = dict(temperature=1.2, top_k=20, top_p=0.9)
    torch.manual_seed(7)
    first = generate_batch(model, prompts, 20, CONTEXT, **options)
    torch.manual_seed(7)
    assert generate_batch(model, prompts, 20, CONTEXT, **options) == first
    assert [len(tokens) for tokens in first] == [20, 20, 20]
    assert all(0 <= t < TINY["vocab_size"] for tokens in first for t in tokens)


def test_a_model_without_padding_support_runs_groups_of_equal_length():
    model = tiny_model(seed=5)
    prompts = prompts_of([4, 2, 4, 2, 3], seed=7)
    expected = generate_batch(model, prompts, 5, CONTEXT)
    model.supports_left_padding = False  # e.g. chapter 12's models, whose attention knows no padding
    batches = []
    model.tok_emb.register_forward_hook(lambda module, args, out: batches.append(tuple(args[0].shape)))
    assert generate_batch(model, prompts, 5, CONTEXT) == expected
    assert [shape for shape in batches if shape[1] > 1] == [(2, 2), (1, 3), (2, 4)]  # each group's prompt pass


@pytest.mark.parametrize("prompts, kwargs, message", [
    ([], {}, "prompts is empty"),
    ("some text", {}, "prompts is a str"),
    (torch.tensor([[1, 2]]), {}, r"prompts is a Tensor.*use generate"),
    ([[1, 2], []], {}, "prompt 1 is empty"),
    ([[1] * (CONTEXT + 1)], {}, f"prompt 0 has {CONTEXT + 1} tokens, more than context_size={CONTEXT}"),
    ([[1, 2.0]], {}, r"prompt 0 holds 2.0 \(float\): token ids are ints"),
    ([[1], "text"], {}, "prompt 1 is a str, not a list of token ids"),
    ([torch.zeros(2, 2, dtype=torch.long)], {}, r"prompt 0 is a tensor of shape \(2, 2\)"),
    ([torch.tensor([0.5])], {}, "dtype torch.float32"),
    ([[1, 97]], {}, "token id 97, outside the model's vocabulary of 97 ids"),
    ([[-1]], {}, "token id -1"),
    ([[1]], {"max_new_tokens": -1}, "max_new_tokens=-1"),
    ([[1]], {"context_size": 0}, "context_size=0"),
    ([[1]], {"pad_id": 97}, "pad_id=97 is not a token id"),
    ([[1]], {"temperature": -1.0}, "temperature=-1.0"),
])
def test_bad_input_gets_a_clear_error(prompts, kwargs, message):
    arguments = {"max_new_tokens": 3, "context_size": CONTEXT, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_batch(tiny_model(), prompts, **arguments)


# -- the chat command ----------------------------------------------------------------------------------------


def chat_model():
    torch.manual_seed(0)
    return GPTModel({**GPT_CONFIG_124M, "context_length": 8, "emb_dim": 8, "n_heads": 2, "n_layers": 1}).eval()


GREEDY = dict(max_new_tokens=4, temperature=0.0, top_k=None, top_p=None)


def test_continue_texts_equals_continue_text_for_each_prompt():
    model, tokenizer = chat_model(), get_gpt2_tokenizer()
    prompts = ["Emma", "It is a truth universally acknowledged, that a single", "Mr. Darcy"]  # the second: cropped
    single = [continue_text(model, tokenizer, p, device="cpu", **GREEDY) for p in prompts]
    assert continue_texts(model, tokenizer, prompts, **GREEDY) == single
    ids = tokenizer.encode(prompts[0])
    assert single[0] == tokenizer.decode(alone_ids(model, ids, tokenizer.eot_token))
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        continue_texts(model, tokenizer, ["Emma", ""], **GREEDY)
    with pytest.raises(ValueError, match="the prompt is empty"):
        continue_text(model, tokenizer, "", **GREEDY)


def alone_ids(model, ids, eos_id):
    out = generate(model, torch.tensor([ids]), GREEDY["max_new_tokens"], 8, eos_id=eos_id)
    return out[0, len(ids):].tolist()


def test_chat_command_continues_several_prompts_in_one_batch(monkeypatch, capsys):
    model, tokenizer = chat_model(), get_gpt2_tokenizer()
    monkeypatch.setattr(chat, "load_trained_model", lambda path, device: (model, tokenizer))
    chat.main(["unused.safetensors", "--prompt", "Emma", "--prompt", "Mr. Darcy", "--temperature", "0",
               "--max-new-tokens", "4"])
    expected = [p + continue_text(model, tokenizer, p, **GREEDY) for p in ("Emma", "Mr. Darcy")]
    assert capsys.readouterr().out == "\n\n".join(expected) + "\n"
