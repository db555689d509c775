"""Appendix E's LoRA: an identity change at the start, only A and B train, and merging changes no output."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from shared.lora import LinearWithLoRA, LoRALayer, count_parameters, merge_lora, replace_linear_with_lora
from shared.transformer import GPTModel

TINY = {"vocab_size": 50, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": True}


def tiny_gpt(seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(TINY).eval()


def lora_gpt(rank: int = 4, alpha: float = 8) -> tuple[GPTModel, GPTModel]:
    """A tiny GPT, and a copy with its own weights frozen and LoRA on every linear layer."""
    base = tiny_gpt()
    model = copy.deepcopy(base)
    for param in model.parameters():
        param.requires_grad = False
    replace_linear_with_lora(model, rank=rank, alpha=alpha)
    return base, model


def randomize_b(model: nn.Module) -> None:
    """Give every B a non-zero value, as training would."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALayer):
                module.B.normal_(std=0.1)


def test_lora_layer_starts_as_zero_and_scales_by_alpha_over_rank() -> None:
    torch.manual_seed(0)
    layer = LoRALayer(6, 5, rank=3, alpha=12)
    x = torch.randn(4, 6)
    assert torch.equal(layer(x), torch.zeros(4, 5))  # B is zero
    assert layer.A.shape == (6, 3) and layer.B.shape == (3, 5)
    assert layer.A.abs().max() > 0
    with torch.no_grad():
        layer.B.normal_()
    assert torch.allclose(layer(x), 4.0 * (x @ layer.A @ layer.B), atol=1e-6)  # 12 / 3 = 4
    assert torch.allclose(layer.delta_weight(), 4.0 * (layer.A @ layer.B).T)


def test_a_is_initialised_like_kaiming_uniform_with_a_sqrt5() -> None:
    torch.manual_seed(123)
    layer = LoRALayer(64, 32, rank=8, alpha=8)
    torch.manual_seed(123)
    expected = torch.empty(64, 8)
    nn.init.kaiming_uniform_(expected, a=math.sqrt(5))
    assert torch.equal(layer.A, expected)


def test_replace_wraps_every_linear_layer() -> None:
    base, model = lora_gpt()
    n_linear = sum(isinstance(m, nn.Linear) for m in base.modules())
    wrapped = [m for m in model.modules() if isinstance(m, LinearWithLoRA)]
    assert n_linear == 2 * 6 + 1  # per block: query, key, value, out_proj, two feed-forward; and out_head
    assert len(wrapped) == n_linear
    assert isinstance(model.out_head, LinearWithLoRA)
    assert isinstance(model.trf_blocks[1].ff.layers[2], LinearWithLoRA)


def test_lora_is_the_identity_change_at_initialisation() -> None:
    base, model = lora_gpt()
    idx = torch.randint(0, TINY["vocab_size"], (3, 10))
    with torch.no_grad():
        assert torch.equal(model(idx), base(idx))


def test_only_a_and_b_are_trainable_and_counted() -> None:
    base, model = lora_gpt(rank=4)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.endswith((".lora.A", ".lora.B")) for name in trainable)
    expected = sum(4 * (m.in_features + m.out_features) for m in base.modules() if isinstance(m, nn.Linear))
    assert count_parameters(model, trainable_only=True) == expected
    assert count_parameters(model) == count_parameters(base) + expected
    assert count_parameters(base, trainable_only=True) == count_parameters(base)


def test_gradients_reach_only_a_and_b_and_training_leaves_frozen_weights_bit_identical() -> None:
    base, model = lora_gpt()
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01, weight_decay=0.1)
    idx = torch.randint(0, TINY["vocab_size"], (4, 12))
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        loss.backward()
        for name, p in model.named_parameters():
            assert (p.grad is not None) == p.requires_grad, name
        optimizer.step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"{name} changed although frozen"
    assert any(m.B.abs().max() > 0 for m in model.modules() if isinstance(m, LoRALayer)), "B should have trained"
    with torch.no_grad():
        assert not torch.allclose(model(idx), base(idx)), "training the LoRA matrices should change the outputs"


def test_merged_model_gives_the_same_outputs_with_plain_linear_layers() -> None:
    base, model = lora_gpt(rank=2, alpha=5)
    randomize_b(model)
    idx = torch.randint(0, TINY["vocab_size"], (3, 10))
    with torch.no_grad():
        before = model(idx)
    assert not torch.allclose(before, base(idx), atol=1e-3)  # the update matters
    merge_lora(model)
    assert not any(isinstance(m, LinearWithLoRA | LoRALayer) for m in model.modules())
    assert set(model.state_dict()) == set(base.state_dict())  # the keys of the model before LoRA
    with torch.no_grad():
        assert torch.allclose(model(idx), before, atol=1e-5, rtol=1e-5)


def test_merged_weight_is_base_plus_scaled_product() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    original = linear.weight.detach().clone()
    holder = nn.Sequential(LinearWithLoRA(linear, rank=2, alpha=3))
    randomize_b(holder)
    lora = holder[0].lora
    expected = original + 1.5 * (lora.A @ lora.B).T
    merge_lora(holder)
    assert holder[0] is linear
    assert torch.allclose(linear.weight, expected, atol=1e-6)


def test_lora_follows_the_dtype_of_the_wrapped_layer() -> None:
    layer = LinearWithLoRA(nn.Linear(4, 3).to(torch.float64), rank=2, alpha=2)
    assert layer.lora.A.dtype == torch.float64 and layer.lora.B.dtype == torch.float64
    assert layer(torch.randn(2, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("rank", [0, -1, 2.5, True])
def test_a_bad_rank_is_explained(rank) -> None:
    with pytest.raises(ValueError, match="rank of the update must be a whole number"):
        LoRALayer(4, 4, rank=rank, alpha=4)


def test_a_bad_alpha_or_layer_is_explained() -> None:
    with pytest.raises(TypeError, match="alpha scales the update"):
        LoRALayer(4, 4, rank=2, alpha="16")
    with pytest.raises(TypeError, match="wraps an nn.Linear layer, not Embedding"):
        LinearWithLoRA(nn.Embedding(4, 4), rank=2, alpha=2)


def test_replacing_twice_is_refused() -> None:
    _, model = lora_gpt()
    with pytest.raises(ValueError, match="already has LoRA"):
        replace_linear_with_lora(model, rank=4, alpha=8)
