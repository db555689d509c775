"""Checks for chapter 4's exercises (the GPT model): parameter counts and separate dropout rates."""

from __future__ import annotations

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


def check_exercise_4_3(model) -> None:
    """Exercise 4.3: a GPT model with separate dropout rates: embeddings 0.1, attention 0.2, shortcuts 0.3."""
    if not_attempted("4.3", model):
        return
    assert model.drop_emb.p == 0.1, f"model.drop_emb.p is {model.drop_emb.p}; the embedding dropout should be 0.1"
    for i, block in enumerate(model.trf_blocks):
        assert block.att.dropout.p == 0.2, (
            f"block {i}: att.dropout.p is {block.att.dropout.p}; the attention-weight dropout should be 0.2"
        )
        assert block.drop_shortcut.p == 0.3, (
            f"block {i}: drop_shortcut.p is {block.drop_shortcut.p}; the shortcut dropout should be 0.3"
        )
    correct("4.3", "Three dropout rates, each set from its own config key.")
