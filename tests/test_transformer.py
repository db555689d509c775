"""The GPT model: its parts, its size, its config checks, and generation with and without a KV cache."""

import pytest
import torch
import torch.nn.functional as F

from shared.transformer import (
    GELU,
    GPT2_CONFIGS,
    GPT_CONFIG_124M,
    FeedForward,
    GPTModel,
    LayerNorm,
    TransformerBlock,
    generate_text_cached,
    generate_text_simple,
)

TINY = {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": 16, "emb_dim": 24, "n_heads": 3, "n_layers": 2}


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**TINY, **overrides}).eval()


def test_layer_norm_normalizes_and_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8) * 3 + 1
    ln = LayerNorm(8)
    out = ln(x)
    assert torch.allclose(out.mean(dim=-1), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(out.var(dim=-1, unbiased=False), torch.ones(2, 5), atol=1e-3)
    assert torch.allclose(out, F.layer_norm(x, (8,), eps=1e-5), atol=1e-5)


def test_gelu_is_gpt2s_tanh_approximation():
    x = torch.linspace(-6, 6, 101)
    assert torch.allclose(GELU()(x), F.gelu(x, approximate="tanh"), atol=1e-6)


def test_feed_forward_expands_four_times_and_keeps_shape():
    ff = FeedForward(GPT_CONFIG_124M)
    assert ff.layers[0].out_features == 3072
    assert ff(torch.rand(2, 3, 768)).shape == (2, 3, 768)


def test_transformer_block_keeps_shape():
    torch.manual_seed(123)
    block = TransformerBlock(GPT_CONFIG_124M)
    assert block(torch.rand(2, 4, 768)).shape == (2, 4, 768)


@pytest.mark.parametrize("name, untied, tied", [
    ("gpt2", 163_009_536, 124_412_160),
    ("gpt2-medium", 406_212_608, 354_749_440),
    ("gpt2-large", 838_220_800, 773_891_840),
    ("gpt2-xl", 1_637_792_000, 1_557_380_800),
])
def test_parameter_counts(name, untied, tied):
    with torch.device("meta"):  # count without allocating gigabytes
        model = GPTModel(GPT2_CONFIGS[name])
    total = sum(p.numel() for p in model.parameters())
    assert total == untied
    assert total - model.out_head.weight.numel() == tied


def test_logits_shape():
    model = tiny_model()
    assert model(torch.randint(0, 97, (3, 7))).shape == (3, 7, 97)


def test_fused_and_explicit_attention_give_the_same_logits():
    fused = tiny_model(use_sdpa=True)
    explicit = tiny_model(use_sdpa=False)
    explicit.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        assert torch.allclose(fused(idx), explicit(idx), atol=1e-5)


@pytest.mark.parametrize("cfg_change, error, message", [
    ({"n_heads": None}, KeyError, r"lacks \['n_heads'\].*GPT_CONFIG_124M"),
    ({"emb_dim": 768.0}, TypeError, r"config\['emb_dim'\] is 768.0 \(float\); it must be int"),
    ({"qkv_bias": 0}, TypeError, r"config\['qkv_bias'\] is 0 \(int\); it must be bool"),
    ({"n_layers": True}, TypeError, r"config\['n_layers'\] is True \(bool\); it must be int"),
    ({"drop_rate": 1.5}, ValueError, r"drop_rate'\] is 1.5; it must be in \[0, 1\)"),
    ({"emb_dim": 100}, ValueError, r"emb_dim'\]=100 is not divisible by config\['n_heads'\]=3"),
    ({"context_length": 0}, ValueError, r"context_length'\] is 0; it must be at least 1"),
    ({"use_sdpa": "yes"}, TypeError, r"use_sdpa'\] is 'yes'"),
])
def test_bad_configs_get_clear_errors(cfg_change, error, message):
    cfg = {**TINY, **cfg_change}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(error, match=message):
        GPTModel(cfg)


def test_input_longer_than_context_is_a_clear_error():
    with pytest.raises(ValueError, match=r"the input has 20 tokens, more than the model's context_length=16"):
        tiny_model()(torch.zeros(1, 20, dtype=torch.long))


@pytest.mark.parametrize("prompt_len, new_tokens, batch", [(1, 10, 1), (5, 30, 2), (16, 8, 1), (3, 40, 3)])
@pytest.mark.parametrize("use_sdpa", [True, False])
def test_cached_generation_gives_the_same_tokens(prompt_len, new_tokens, batch, use_sdpa):
    # Includes runs that outgrow the context (16): the cache is then rebuilt from the last 16 tokens.
    model = tiny_model(seed=prompt_len, use_sdpa=use_sdpa)
    torch.manual_seed(1)
    idx = torch.randint(0, 97, (batch, prompt_len))
    simple = generate_text_simple(model, idx, new_tokens, context_size=16)
    cached = generate_text_cached(model, idx, new_tokens, context_size=16)
    assert torch.equal(simple, cached)


def test_cached_generation_runs_one_token_per_step():
    model = tiny_model()
    seen = []
    model.tok_emb.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    idx = torch.randint(0, 97, (1, 4))
    generate_text_cached(model, idx, max_new_tokens=10, context_size=16)
    assert seen == [4] + [1] * 9  # the prompt once, then only the newest token
    seen.clear()
    generate_text_simple(model, idx, max_new_tokens=10, context_size=16)
    assert seen == list(range(4, 14))  # the whole context, every step
