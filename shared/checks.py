"""Self-checks for the exercises: call `check_exercise_2_1(...)` after filling in an exercise cell.

A check that finds the exercise untouched (its answer still `None`) says so and does not fail, so a
fresh clone's notebooks run green; a wrong answer raises an AssertionError that says what is wrong.
"""

from __future__ import annotations

import torch


def _not_attempted(exercise: str, *answers) -> bool:
    if any(answer is None for answer in answers):
        print(f"Exercise {exercise}: not attempted yet. Replace the None above with your answer, then run this cell.")
        return True
    return False


def _correct(exercise: str, detail: str = "") -> None:
    print(f"Exercise {exercise}: correct!" + (f" {detail}" if detail else ""))


# -- chapter 2 --------------------------------------------------------------------------------------

AKWIRW_IER_IDS = [33901, 86, 343, 86, 220, 959]


def check_exercise_2_1(ids, pieces) -> None:
    """Exercise 2.1: the GPT-2 ids of "Akwirw ier", and the text of each id decoded on its own."""
    if _not_attempted("2.1", ids, pieces):
        return
    ids = list(ids)
    assert all(isinstance(i, int) for i in ids), "ids should be a list of integers from tokenizer.encode(...)"
    assert ids == AKWIRW_IER_IDS, (
        f"the ids are {ids}; GPT-2's tokenizer gives {len(AKWIRW_IER_IDS)} ids for 'Akwirw ier'. "
        "Encode exactly that string with get_gpt2_tokenizer().encode(...)."
    )
    pieces = list(pieces)
    assert len(pieces) == len(ids), f"decode each of the {len(ids)} ids on its own: one piece per id"
    assert "".join(pieces) == "Akwirw ier", (
        f"the pieces {pieces} join to {''.join(pieces)!r}, not 'Akwirw ier': decode each id with decode([i])"
    )
    _correct("2.1", "BPE spells the unknown word out of known subwords: " + " | ".join(repr(p) for p in pieces))


def _check_first_batch(loader, max_length: int, stride: int, label: str) -> None:
    inputs, targets = next(iter(loader))
    assert inputs.ndim == 2 and inputs.shape[1] == max_length, (
        f"{label}: the inputs have shape {tuple(inputs.shape)}; each row should hold max_length={max_length} tokens"
    )
    assert inputs.shape == targets.shape, f"{label}: inputs and targets should have the same shape"
    assert torch.equal(inputs[:, 1:], targets[:, :-1]), f"{label}: targets should be the inputs shifted by one"
    assert inputs.shape[0] >= 2, f"{label}: use a batch_size of at least 2 so the stride can be seen"
    # Row r + 1 starts `stride` tokens after row r (only true without shuffling): the window of
    # max_length + 1 tokens (inputs plus the last target) of row r, moved by `stride`, is row r + 1's.
    window = torch.cat([inputs, targets[:, -1:]], dim=1)
    overlap = max_length + 1 - stride
    for r in range(inputs.shape[0] - 1):
        assert torch.equal(window[r, stride:], window[r + 1, :overlap]), (
            f"{label}: row {r + 1} should start {stride} tokens after row {r}. Did you pass stride={stride} "
            "and shuffle=False?"
        )


def check_exercise_2_2(dataloader_2_2, dataloader_8_2) -> None:
    """Exercise 2.2: loaders with (max_length=2, stride=2) and (max_length=8, stride=2), unshuffled."""
    if _not_attempted("2.2", dataloader_2_2, dataloader_8_2):
        return
    _check_first_batch(dataloader_2_2, max_length=2, stride=2, label="max_length=2, stride=2")
    _check_first_batch(dataloader_8_2, max_length=8, stride=2, label="max_length=8, stride=2")
    _correct("2.2", "With stride < max_length, consecutive windows overlap; with stride = max_length they tile.")


# -- chapter 3 --------------------------------------------------------------------------------------


def check_exercise_3_1(sa_v1, sa_v2, inputs) -> None:
    """Exercise 3.1: a SelfAttention_v1 given SelfAttention_v2's weights computes the same context vectors."""
    if _not_attempted("3.1", sa_v1, sa_v2, inputs):
        return
    assert isinstance(sa_v1.W_query, torch.nn.Parameter), "sa_v1 should be a SelfAttention_v1 (weights as nn.Parameter)"
    assert isinstance(sa_v2.W_query, torch.nn.Linear), "sa_v2 should be a SelfAttention_v2 (weights in nn.Linear)"
    for name in ("W_query", "W_key", "W_value"):
        v1, v2 = getattr(sa_v1, name), getattr(sa_v2, name).weight
        assert v1.shape == v2.T.shape, (
            f"sa_v1.{name} has shape {tuple(v1.shape)}; nn.Linear stores its weight as (d_out, d_in), "
            f"so sa_v1.{name} should be sa_v2.{name}.weight transposed: shape {tuple(v2.T.shape)}"
        )
    with torch.no_grad():
        out1, out2 = sa_v1(inputs), sa_v2(inputs)
    assert torch.allclose(out1, out2, atol=1e-6), (
        "the two modules give different context vectors: copy each of sa_v2's weights, transposed, into sa_v1 "
        "(e.g. sa_v1.W_query = torch.nn.Parameter(sa_v2.W_query.weight.T))"
    )
    _correct("3.1", "nn.Linear computes x @ W.T, so v1's matrices are v2's weights transposed.")


def check_exercise_3_2(mha, inputs) -> None:
    """Exercise 3.2: a MultiHeadAttentionWrapper with two heads whose context vectors are 2-dimensional."""
    if _not_attempted("3.2", mha, inputs):
        return
    heads = getattr(mha, "heads", None)
    assert heads is not None and len(heads) == 2, "keep num_heads=2: the wrapper should hold two heads"
    with torch.no_grad():
        context_vecs = mha(inputs)
    assert context_vecs.shape[-1] == 2, (
        f"the context vectors have {context_vecs.shape[-1]} dimensions, not 2. The wrapper concatenates its "
        "heads' outputs, so the output size is num_heads * d_out: which d_out gives 2?"
    )
    _correct("3.2", "With d_out=1 each head returns one number per token; the two heads concatenate to 2.")


def check_exercise_3_3(mha) -> None:
    """Exercise 3.3: a MultiHeadAttention the size of one of GPT-2 small's attention layers."""
    if _not_attempted("3.3", mha):
        return
    checks = {
        "num_heads": (mha.num_heads, 12),
        "d_in (W_query.in_features)": (mha.W_query.in_features, 768),
        "d_out": (mha.d_out, 768),
        "head_dim": (mha.head_dim, 64),
        "context_length (mask size)": (mha.mask.shape[-1], 1024),
    }
    for name, (got, want) in checks.items():
        assert got == want, f"{name} is {got}; GPT-2 small's attention has {want}"
    _correct("3.3", f"12 heads of 64 dimensions; {sum(p.numel() for p in mha.parameters()):,} parameters.")


# -- chapter 4 --------------------------------------------------------------------------------------

GPT2_TOTAL_PARAMS = {  # (separate output head, output head tied to the token embedding)
    "gpt2-medium": (406_212_608, 354_749_440),
    "gpt2-large": (838_220_800, 773_891_840),
    "gpt2-xl": (1_637_792_000, 1_557_380_800),
}


def check_exercise_4_1(ff_params, att_params) -> None:
    """Exercise 4.1: parameters in one block's feed-forward module and attention module (GPT_CONFIG_124M)."""
    if _not_attempted("4.1", ff_params, att_params):
        return
    assert ff_params == 4_722_432, (
        f"ff_params is {ff_params:,}. The feed-forward module has two Linear layers, 768 -> 3072 and 3072 -> 768, "
        "each with a bias: count with sum(p.numel() for p in block.ff.parameters())"
    )
    assert att_params == 2_360_064, (
        f"att_params is {att_params:,}. Query, key and value are 768 x 768 without bias; out_proj is 768 x 768 "
        "with a bias: count with sum(p.numel() for p in block.att.parameters())"
    )
    _correct("4.1", "The feed-forward module holds twice the attention's parameters.")


def check_exercise_4_2(total_params: dict) -> None:
    """Exercise 4.2: total parameters of GPT-2 medium, large and XL, by name."""
    if _not_attempted("4.2", total_params):
        return
    for name, (untied, tied) in GPT2_TOTAL_PARAMS.items():
        assert name in total_params, f"total_params should have an entry for {name!r}"
        got = total_params[name]
        assert got in (untied, tied), (
            f"{name}: {got:,} parameters; GPTModel with that config has {untied:,} "
            f"({tied:,} without the output head, which GPT-2 ties to the token embedding). Check emb_dim, "
            "n_layers and n_heads."
        )
    _correct("4.2", "Parameters grow with n_layers x emb_dim^2: with tied heads, GPT-2 XL has 12.5x GPT-2 small's.")


def check_exercise_4_3(model) -> None:
    """Exercise 4.3: a GPT model with separate dropout rates: embeddings 0.1, attention 0.2, shortcuts 0.3."""
    if _not_attempted("4.3", model):
        return
    assert model.drop_emb.p == 0.1, f"model.drop_emb.p is {model.drop_emb.p}; the embedding dropout should be 0.1"
    for i, block in enumerate(model.trf_blocks):
        assert block.att.dropout.p == 0.2, (
            f"block {i}: att.dropout.p is {block.att.dropout.p}; the attention-weight dropout should be 0.2"
        )
        assert block.drop_shortcut.p == 0.3, (
            f"block {i}: drop_shortcut.p is {block.drop_shortcut.p}; the shortcut dropout should be 0.3"
        )
    _correct("4.3", "Three dropout rates, each set from its own config key.")
