"""`GPTModel` held to GPT-2 itself: Hugging Face's `GPT2LMHeadModel` is the oracle.

Each test builds a small GPT-2 with random (seeded) weights, loads its state dict into `GPTModel`
with `load_weights_into_gpt`, and checks that the two compute the same thing: logits, loss,
gradients and greedy generation. Nothing is downloaded. The sizes are deliberately odd (a vocabulary
of 97, 3 heads of 16 dimensions, a context of 17) so that a transposed or mis-split weight cannot
hide behind a square matrix.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from shared.transformer import GPTModel, generate_text_cached, generate_text_simple
from shared.weights import gpt2_config, gpt2_parameter_map, load_gpt2_safetensors, load_weights_into_gpt

# (vocab_size, n_positions, n_embd, n_layer, n_head)
SMALL_CONFIGS = {
    "odd": (97, 17, 48, 2, 3),
    "one-head": (50, 9, 40, 2, 1),
    "wider": (256, 32, 64, 3, 4),
    "one-layer": (1000, 24, 96, 1, 6),
}
ATOL = 1e-5


@functools.cache
def hf_model(name: str) -> GPT2LMHeadModel:
    """A seeded random GPT-2 of one of SMALL_CONFIGS's sizes, in eval mode (dropout off).

    Hugging Face initialises layer norms to (1, 0) and biases to 0; every parameter is perturbed
    here so that a layer norm or bias loaded into the wrong place would change the output.
    """
    vocab, positions, embd, layers, heads = SMALL_CONFIGS[name]
    config = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=embd, n_layer=layers, n_head=heads,
                        bos_token_id=None, eos_token_id=None)  # no end-of-text id: generation never stops early
    torch.manual_seed(sum(SMALL_CONFIGS[name]))
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            base = 1.0 if ".ln_" in param_name and param_name.endswith("weight") else 0.0
            param.copy_(base + 0.1 * torch.randn_like(param))
    return model


def ours_from(hf: GPT2LMHeadModel, use_sdpa: bool) -> GPTModel:
    """A GPTModel of `hf`'s config with `hf`'s weights."""
    c = hf.config
    cfg = {"vocab_size": c.vocab_size, "context_length": c.n_positions, "emb_dim": c.n_embd, "n_heads": c.n_head,
           "n_layers": c.n_layer, "drop_rate": 0.0, "qkv_bias": True, "use_sdpa": use_sdpa}
    torch.manual_seed(0)  # GPTModel's own initialisation is overwritten; seeded all the same
    gpt = GPTModel(cfg).eval()
    load_weights_into_gpt(gpt, hf.state_dict())
    return gpt


def random_batch(hf: GPT2LMHeadModel, batch: int = 3) -> torch.Tensor:
    """A batch of token ids that fills the whole context."""
    generator = torch.Generator().manual_seed(1234)
    return torch.randint(0, hf.config.vocab_size, (batch, hf.config.n_positions), generator=generator)


configs = pytest.mark.parametrize("name", list(SMALL_CONFIGS))
sdpa = pytest.mark.parametrize("use_sdpa", [True, False], ids=["sdpa", "explicit"])


@configs
@sdpa
def test_logits_loss_and_gradients_match_gpt2(name: str, use_sdpa: bool) -> None:
    hf = hf_model(name)
    gpt = ours_from(hf, use_sdpa)
    ids = random_batch(hf)
    hf.zero_grad()

    out = hf(ids, labels=ids)  # Hugging Face shifts the labels itself: token t predicts token t + 1
    logits = gpt(ids)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(logits, out.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(loss, out.loss, atol=ATOL, rtol=0)

    out.loss.backward()
    loss.backward()
    hf_grads = {key.removeprefix("transformer."): p.grad for key, p in hf.named_parameters()}
    assert "lm_head.weight" not in hf_grads  # tied: HF's wte gradient holds both uses of the matrix
    for key, target in gpt2_parameter_map(gpt).items():
        if key == "lm_head.weight":
            continue
        ours = target.join([p.grad for p in target.params])
        if key == "wte.weight":  # our embedding and output head are separate matrices: add their gradients
            ours = ours + gpt.out_head.weight.grad
        torch.testing.assert_close(ours, hf_grads.pop(key), atol=ATOL, rtol=1e-4, msg=lambda m, k=key: f"{k}: {m}")
    assert not hf_grads, f"GPT-2 parameters not compared: {sorted(hf_grads)}"


@configs
@sdpa
def test_greedy_generation_matches_gpt2(name: str, use_sdpa: bool) -> None:
    hf = hf_model(name)
    gpt = ours_from(hf, use_sdpa)
    context = hf.config.n_positions
    prompt = random_batch(hf, batch=2)[:, :4]
    new_tokens = context - prompt.shape[1]  # GPT-2 cannot go past its last position: fill the context exactly

    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=0)
    assert expected.shape == (2, context)
    torch.testing.assert_close(generate_text_simple(gpt, prompt, new_tokens, context), expected, rtol=0, atol=0)
    torch.testing.assert_close(generate_text_cached(gpt, prompt, new_tokens, context), expected, rtol=0, atol=0)


def test_weights_saved_by_hugging_face_load_from_safetensors(tmp_path) -> None:
    hf = hf_model("odd")
    hf.save_pretrained(tmp_path)  # writes model.safetensors (the tied lm_head is left out of the file)
    state_dict = load_gpt2_safetensors(tmp_path / "model.safetensors")

    gpt = GPTModel({**ours_from(hf, use_sdpa=True).cfg})  # a fresh model of the same config
    load_weights_into_gpt(gpt, state_dict)
    gpt.eval()
    ids = random_batch(hf)
    with torch.no_grad():
        torch.testing.assert_close(gpt(ids), hf(ids).logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(gpt.out_head.weight, gpt.tok_emb.weight, atol=0, rtol=0)  # untied copies, equal
    assert load_gpt2_safetensors(tmp_path).keys() == state_dict.keys()  # a folder works too


PUBLISHED_SIZES = {  # parameters of OpenAI's GPT-2 checkpoints, counting the tied embedding once
    "gpt2": (768, 12, 12, 124_439_808),
    "gpt2-medium": (1024, 24, 16, 354_823_168),
    "gpt2-large": (1280, 36, 20, 774_030_080),
    "gpt2-xl": (1600, 48, 25, 1_557_611_200),
}


@pytest.mark.parametrize("name", list(PUBLISHED_SIZES))
def test_parameter_counts_match_gpt2(name: str) -> None:
    n_embd, n_layer, n_head, published = PUBLISHED_SIZES[name]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        hf = GPT2LMHeadModel(GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head))
        gpt = GPTModel(gpt2_config(name))
    hf_total = sum(p.numel() for p in hf.parameters())  # the tied lm_head is listed once
    ours_total = sum(p.numel() for p in gpt.parameters())
    ours_tied = ours_total - gpt.out_head.weight.numel()  # GPT-2 reuses the embedding as the output head
    assert ours_tied == hf_total == published
