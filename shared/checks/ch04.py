"""Checks for chapter 4's exercises (the GPT model): parameter counts and separate dropout rates."""

from __future__ import annotations

import torch

from shared.checks.common import correct, not_attempted

GPT2_TOTAL_PARAMS = {  # (separate output head, output head tied to the token embedding)
    "gpt2-medium": (406_212_608, 354_749_440),
    "gpt2-large": (838_220_800, 773_891_840),
    "gpt2-xl": (1_637_792_000, 1_557_380_800),
}


def check_exercise_4_1(ff_params, att_params) -> None:
    """Exercise 4.1: parameters in one block's feed-forward module and attention module (GPT_CONFIG_124M)."""
    if not_attempted("4.1", ff_params, att_params):
        return
    assert ff_params == 4_722_432, (
        f"ff_params is {ff_params:,}. The feed-forward module has two Linear layers, 768 -> 3072 and 3072 -> 768, "
        "each with a bias: count with sum(p.numel() for p in block.ff.parameters())"
    )
    assert att_params == 2_360_064, (
        f"att_params is {att_params:,}. Query, key and value are 768 x 768 without bias; out_proj is 768 x 768 "
        "with a bias: count with sum(p.numel() for p in block.att.parameters())"
    )
    correct("4.1", "The feed-forward module holds twice the attention's parameters.")


def check_exercise_4_2(total_params: dict) -> None:
    """Exercise 4.2: total parameters of GPT-2 medium, large and XL, by name."""
    if not_attempted("4.2", total_params):
        return
    for name, (untied, tied) in GPT2_TOTAL_PARAMS.items():
        assert name in total_params, f"total_params should have an entry for {name!r}"
        got = total_params[name]
        assert got in (untied, tied), (
            f"{name}: {got:,} parameters; GPTModel with that config has {untied:,} "
            f"({tied:,} without the output head, which GPT-2 ties to the token embedding). Check emb_dim, "
            "n_layers and n_heads."
        )
    correct("4.2", "Parameters grow with n_layers x emb_dim^2: with tied heads, GPT-2 XL has 12.5x GPT-2 small's.")


def _dropout_calls(model) -> list[tuple[str, float, int]]:
    """(name, rate, input dimensions) of each nn.Dropout that one training-mode forward pass calls, in order."""
    calls = []
    hooks = [module.register_forward_hook(lambda m, args, out, name=name: calls.append((name, m.p, args[0].dim())))
             for name, module in model.named_modules() if isinstance(module, torch.nn.Dropout)]
    was_training = model.training
    try:
        model.train()
        with torch.no_grad():
            model(torch.zeros(1, 4, dtype=torch.long, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return calls


def check_exercise_4_3(model) -> None:
    """Exercise 4.3: a GPT model with separate dropout rates: embeddings 0.1, attention 0.2, shortcuts 0.3.

    Runs one training-mode forward pass and checks the rate of every dropout where it is applied.
    """
    if not_attempted("4.3", model):
        return
    assert isinstance(model, torch.nn.Module) and hasattr(model, "trf_blocks"), (
        "model_4_3 should be a GPT model, e.g. GPTModelSeparateDropout(GPT_CONFIG_4_3)"
    )
    calls = _dropout_calls(model)
    assert calls and calls[0][2] == 3, "the model should apply a dropout to the embeddings first (drop_emb)"
    assert calls[0][1] == 0.1, (
        f"the dropout on the embeddings ({calls[0][0]}) has rate {calls[0][1]}; it should be drop_rate_emb = 0.1"
    )
    in_blocks = 0
    for i, block in enumerate(model.trf_blocks):
        mine = [(name, p, dims) for name, p, dims in calls if name.startswith(f"trf_blocks.{i}.")]
        in_blocks += len(mine)
        # The attention weights are (batch, heads, tokens, tokens); the fused kernel takes the rate itself.
        attention = [p for _, p, dims in mine if dims == 4] or [block.att.dropout.p]
        shortcut = [p for _, p, dims in mine if dims == 3]
        assert all(p == 0.2 for p in attention), (
            f"block {i}: the dropout on the attention weights has rate {attention[0]}; "
            "the attention-weight dropout should be drop_rate_attn = 0.2"
        )
        assert len(shortcut) == 2, (
            f"block {i} applies {len(shortcut)} dropout(s) to its sub-layers' outputs; it should apply "
            "drop_shortcut twice, before each of its two shortcut additions"
        )
        assert all(p == 0.3 for p in shortcut), (
            f"block {i}: the dropout before the shortcuts has rate {shortcut}; "
            "the shortcut dropout should be drop_rate_shortcut = 0.3"
        )
    assert len(calls) == 1 + in_blocks, "a dropout outside the blocks, besides drop_emb, should not be there"
    correct("4.3", "Three dropout rates, each set from its own config key and applied where it belongs.")
