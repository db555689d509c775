"""Chapter 12's Llama 3 and Qwen3, held to `transformers`' own implementations.

Each oracle test builds a small, odd-sized `transformers` model with random weights, writes it with
`save_pretrained`, loads that file through our loader and compares logits and greedy generation.
"""

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)
from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

from shared.attention import KVCache
from shared.llama3 import LLAMA32_CONFIG_1B, LLAMA32_CONFIG_3B, Llama3Model, load_weights_into_llama
from shared.modern_blocks import (
    GroupedQueryAttention,
    MoEFeedForward,
    RMSNorm,
    apply_rope,
    compute_rope_params,
    load_balancing_loss,
)
from shared.qwen3 import QWEN3_CONFIGS, Qwen3Model, load_weights_into_qwen
from shared.transformer import generate_text_cached, generate_text_simple

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"vocab_size": 97, "context_length": 64, "emb_dim": 48, "n_heads": 6, "n_layers": 2, "hidden_dim": 80,
         "n_kv_groups": 2, "rope_base": 10_000.0, "dtype": torch.float32}
LLAMA3_SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_context_length": 16}


def hf_config(cfg: dict):
    """The `transformers` config that describes the same model as our config dict."""
    common = dict(vocab_size=cfg["vocab_size"], hidden_size=cfg["emb_dim"], num_hidden_layers=cfg["n_layers"],
                  num_attention_heads=cfg["n_heads"], num_key_value_heads=cfg["n_kv_groups"],
                  max_position_embeddings=cfg["context_length"], tie_word_embeddings=cfg.get("tie_embeddings", False))
    rope = {"rope_type": "default", "rope_theta": cfg["rope_base"]}
    if cfg.get("rope_freq"):
        f = cfg["rope_freq"]
        rope = {"rope_type": "llama3", "rope_theta": cfg["rope_base"], "factor": f["factor"],
                "low_freq_factor": f["low_freq_factor"], "high_freq_factor": f["high_freq_factor"],
                "original_max_position_embeddings": f["original_context_length"]}
    if "qk_norm" not in cfg:
        return LlamaForCausalLM, LlamaConfig(**common, intermediate_size=cfg["hidden_dim"], rms_norm_eps=1e-5,
                                             rope_parameters=rope)
    if cfg.get("num_experts"):
        return Qwen3MoeForCausalLM, Qwen3MoeConfig(
            **common, head_dim=cfg["head_dim"], num_experts=cfg["num_experts"], norm_topk_prob=True,
            num_experts_per_tok=cfg["num_experts_per_tok"], moe_intermediate_size=cfg["moe_intermediate_size"],
            rope_parameters=rope)
    return Qwen3ForCausalLM, Qwen3Config(**common, intermediate_size=cfg["hidden_dim"], head_dim=cfg["head_dim"],
                                         rope_parameters=rope)


ORACLE_CONFIGS = {
    "llama-gqa": SMALL,
    "llama-mqa-tied-llama3-rope": {**SMALL, "n_kv_groups": 1, "tie_embeddings": True, "rope_freq": LLAMA3_SCALING},
    "qwen3-head-dim-10": {**SMALL, "head_dim": 10, "qk_norm": True, "n_kv_groups": 3},
    "qwen3-tied-mha": {**SMALL, "head_dim": 8, "qk_norm": True, "n_kv_groups": 6, "tie_embeddings": True},
    "qwen3-moe-5-experts-top-2": {**SMALL, "head_dim": 12, "qk_norm": True, "num_experts": 5,
                                  "num_experts_per_tok": 2, "moe_intermediate_size": 24},
}


def build_pair(cfg: dict, tmp_path):
    """A random `transformers` model saved with `save_pretrained`, and ours loaded from that file."""
    torch.manual_seed(0)
    hf_class, config = hf_config(cfg)
    reference = hf_class(config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():  # norms too, so that a misplaced norm shows
            parameter.normal_(0.0, 0.2)
    reference.save_pretrained(tmp_path)
    params = load_file(tmp_path / "model.safetensors")
    if "qk_norm" in cfg:
        ours = Qwen3Model(cfg)
        load_weights_into_qwen(ours, cfg, params)
    else:
        ours = Llama3Model(cfg)
        load_weights_into_llama(ours, cfg, params)
    return reference, ours.eval(), params


@pytest.mark.parametrize("name", ORACLE_CONFIGS)
def test_logits_and_greedy_generation_match_transformers(name, tmp_path):
    cfg = ORACLE_CONFIGS[name]
    reference, ours, _ = build_pair(cfg, tmp_path)
    idx = torch.randint(0, cfg["vocab_size"], (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), reference(idx).logits, atol=1e-5, rtol=0)
        prompt = idx[:1, :5]
        expected = reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                                      do_sample=False)
    assert torch.equal(generate_text_simple(ours, prompt, 12, cfg["context_length"]), expected)
    assert torch.equal(generate_text_cached(ours, prompt, 12, cfg["context_length"]), expected)
    if cfg.get("tie_embeddings"):
        assert ours.out_head.weight is ours.tok_emb.weight


def test_loading_assigns_the_checkpoints_tensors_into_a_meta_model(tmp_path):
    cfg = ORACLE_CONFIGS["qwen3-head-dim-10"]
    _, _, params = build_pair(cfg, tmp_path)
    with torch.device("meta"):
        model = Qwen3Model(cfg)
    load_weights_into_qwen(model, cfg, params)
    # No copy: the model's weights are the loaded tensors themselves, and the RoPE tables are real.
    assert model.tok_emb.weight.data_ptr() == params["model.embed_tokens.weight"].data_ptr()
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]]))).all()


def test_loader_names_the_key_and_both_shapes_on_a_mismatch(tmp_path):
    cfg = ORACLE_CONFIGS["llama-gqa"]
    _, ours, params = build_pair(cfg, tmp_path)
    params["model.layers.1.mlp.up_proj.weight"] = torch.zeros(81, 48)
    before = ours.trf_blocks[0].ff.fc1.weight.clone()
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj\.weight has shape \(81, 48\) .* \(80, 48\)"):
        load_weights_into_llama(ours, cfg, params)
    assert torch.equal(ours.trf_blocks[0].ff.fc1.weight, before)  # checked before anything was copied


def test_loader_refuses_another_family_and_another_size(tmp_path):
    cfg = ORACLE_CONFIGS["qwen3-head-dim-10"]
    _, _, params = build_pair(cfg, tmp_path)
    llama_cfg = {**SMALL, "n_kv_groups": 3}
    with pytest.raises(ValueError, match=r"unexpected \['model\.layers\.0\.self_attn\.k_norm\.weight'"):
        load_weights_into_llama(Llama3Model(llama_cfg), llama_cfg, params)
    with pytest.raises(ValueError, match="param_config does not describe this model.*n_layers"):
        load_weights_into_qwen(Qwen3Model(cfg), {**cfg, "n_layers": 3}, params)


PUBLISHED = {"Llama 3.2 1B": (LLAMA32_CONFIG_1B, 1_235_814_400), "Llama 3.2 3B": (LLAMA32_CONFIG_3B, 3_212_749_824),
             "Qwen3 0.6B": (QWEN3_CONFIGS["0.6B"], 596_049_920), "Qwen3 8B": (QWEN3_CONFIGS["8B"], 8_190_735_360),
             "Qwen3 30B-A3B": (QWEN3_CONFIGS["30B-A3B"], 30_532_122_624)}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_sizes_have_transformers_parameter_counts(name):
    cfg, published = PUBLISHED[name]
    hf_class, config = hf_config(cfg)
    with torch.device("meta"):
        ours = (Qwen3Model if name.startswith("Qwen") else Llama3Model)(cfg)
        reference = hf_class(config)
    assert sum(p.numel() for p in ours.parameters()) == reference.num_parameters() == published


def test_rmsnorm_gives_unit_root_mean_square_and_keeps_bf16():
    x = torch.randn(3, 5, 16) * 7 + 2
    y = RMSNorm(16)(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(3, 5), atol=1e-4, rtol=0)
    assert RMSNorm(16, dtype=torch.bfloat16)(x.bfloat16()).dtype == torch.bfloat16


def test_a_bfloat16_model_computes_in_bfloat16_close_to_float32():
    cfg = ORACLE_CONFIGS["qwen3-moe-5-experts-top-2"]
    torch.manual_seed(0)
    model32 = Qwen3Model(cfg)
    model16 = Qwen3Model({**cfg, "dtype": torch.bfloat16})
    model16.load_state_dict(model32.state_dict())
    idx = torch.tensor([[5, 7, 11, 13]])
    logits16 = model16(idx)
    assert logits16.dtype == torch.bfloat16
    assert (logits16.float() - model32(idx)).abs().max().item() < 0.1


def test_rope_scores_depend_only_on_the_distance_between_positions():
    cos, sin = compute_rope_params(16, context_length=40)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        return (apply_rope(q, cos, sin, offset=m) * apply_rope(k, cos, sin, offset=n)).sum().item()

    assert score(3, 1) == pytest.approx(score(30, 28), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    assert apply_rope(q, cos, sin).norm().item() == pytest.approx(q.norm().item(), rel=1e-6)  # a rotation


def test_llama3_scaling_keeps_fast_frequencies_and_slows_slow_ones():
    plain_cos, _ = compute_rope_params(64, 500_000.0, 4)
    scaled_cos, _ = compute_rope_params(64, 500_000.0, 4, LLAMA32_CONFIG_1B["rope_freq"])
    angle = lambda cos: torch.acos(cos[1, :32].clamp(-1, 1))  # noqa: E731 - position 1's angles
    assert torch.allclose(angle(scaled_cos)[:4], angle(plain_cos)[:4])
    torch.testing.assert_close(angle(scaled_cos)[-4:], angle(plain_cos)[-4:] / 32, rtol=1e-3, atol=0)


def test_grouped_query_attention_caches_only_the_key_value_heads():
    torch.manual_seed(0)
    att = GroupedQueryAttention(32, num_heads=8, num_kv_groups=2)
    cos, sin = compute_rope_params(4, context_length=16)
    cache = KVCache(1, 16)
    att(torch.randn(1, 5, 32), cos, sin, cache)
    assert cache.keys[0].shape == (1, 2, 16, 4)


def test_load_balancing_loss_matches_transformers_and_is_top_k_when_even():
    logits = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    expected = load_balancing_loss_func((logits,), num_experts=6, top_k=2)
    torch.testing.assert_close(load_balancing_loss(logits, 2), expected)
    assert load_balancing_loss(torch.zeros(12, 6), 2).item() == pytest.approx(2.0, abs=1e-6)


def test_moe_sends_each_token_to_its_top_k_experts_only():
    torch.manual_seed(0)
    moe = MoEFeedForward(8, 16, num_experts=4, num_experts_per_tok=1)
    x = torch.randn(2, 3, 8)
    out = moe(x)
    chosen = moe.last_router_logits.argmax(-1)
    for i, token in enumerate(x.reshape(-1, 8)):
        e = chosen[i].item()
        expert = moe.fc3[e](torch.nn.functional.silu(moe.fc1[e](token)) * moe.fc2[e](token))
        torch.testing.assert_close(out.reshape(-1, 8)[i], expert)  # weight 1: one expert, renormalised


@pytest.mark.parametrize("change, message", [
    ({"n_kv_groups": 4}, "n_heads=6 is not a multiple of n_kv_groups=4"),
    ({"emb_dim": 50}, "emb_dim=50 is not divisible by n_heads=6"),
    ({"hidden_dim": 0}, "hidden_dim=0 .* must be a positive number"),
    ({"rope_freq": {"factor": 8.0}}, "rope_freq=.* needs exactly the keys"),
    ({"qk_norm": True}, "Llama 3 has no qk_norm"),
])
def test_bad_configs_are_refused_with_the_key_and_value(change, message):
    with pytest.raises(ValueError, match=message):
        Llama3Model({**SMALL, **change})


def test_generation_past_the_context_is_refused_clearly():
    model = Qwen3Model({**SMALL, "context_length": 8, "head_dim": 8, "qk_norm": True})
    with pytest.raises(ValueError, match="9 tokens exceed context_length=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_kv_cache_bytes_counts_what_a_real_cache_holds():
    from shared.memory import kv_cache_bytes

    cfg = ORACLE_CONFIGS["qwen3-head-dim-10"]
    model = Qwen3Model(cfg)
    cache = KVCache(cfg["n_layers"], max_length=20)
    model(torch.zeros(2, 7, dtype=torch.long), kv_cache=cache)
    held = sum(t.nbytes for t in cache.keys + cache.values)
    assert held == kv_cache_bytes(cfg, num_tokens=20, batch_size=2, bytes_per_value=4)
    with pytest.raises(ValueError, match="num_tokens=0"):
        kv_cache_bytes(cfg, num_tokens=0)
