"""Self-checks for the exercises: call `check_exercise_2_1(...)` after filling in an exercise cell.

A check that finds the exercise untouched (its answer still `None`) says so and does not fail, so a
fresh clone's notebooks run green; a wrong answer raises an AssertionError that says what is wrong.
"""

from __future__ import annotations

import copy
import math

import torch

from shared.pretraining import calc_loss_loader, generate, next_token_logits_to_id
from shared.transformer import GPTModel


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


# -- chapter 5 --------------------------------------------------------------------------------------

# The book's toy example for decoding: a nine-word vocabulary and the logits of the next token after
# "every effort moves you".
TOY_VOCAB = ("closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you")
TOY_NEXT_TOKEN_LOGITS = (4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79)

GPT2_LOADED_PARAMS = {  # GPTModel(gpt2_config(name)): (separate output head, head tied to the embedding)
    "gpt2": (163_037_184, 124_439_808),
    "gpt2-medium": (406_286_336, 354_823_168),
    "gpt2-large": (838_359_040, 774_030_080),
    "gpt2-xl": (1_638_022_400, 1_557_611_200),
}


def _is_count(value) -> bool:
    """True for a whole number (int, or a float/tensor holding one), False for fractions and bools."""
    if isinstance(value, bool):
        return False
    try:
        return float(value) == int(value)
    except (TypeError, ValueError):
        return False


def check_exercise_5_1(pizza_counts) -> None:
    """Exercise 5.1: how often "pizza" comes up in 1,000 samples at temperatures 1, 0.1 and 5."""
    if _not_attempted("5.1", pizza_counts):
        return
    assert isinstance(pizza_counts, dict) and set(pizza_counts) == {1, 0.1, 5}, (
        "pizza_counts should be a dict with one entry per temperature: {1: count, 0.1: count, 5: count}"
    )
    logits = torch.tensor(TOY_NEXT_TOKEN_LOGITS)
    pizza = TOY_VOCAB.index("pizza")
    summary = []
    for temperature, count in sorted(pizza_counts.items()):
        assert _is_count(count) and 0 <= int(count) <= 1000, (
            f"at temperature {temperature} the answer is {count!r}: give how many of the 1,000 samples were "
            "'pizza' (a whole number from 0 to 1000), not a probability"
        )
        p = torch.softmax(logits / temperature, dim=0)[pizza].item()
        mean, sd = 1000 * p, math.sqrt(1000 * p * (1 - p))
        low, high = max(0, math.floor(mean - 5 * sd)), math.ceil(mean + 5 * sd)
        assert low <= int(count) <= high, (
            f"at temperature {temperature}, 'pizza' has probability {p:.4%}, so 1,000 samples give about "
            f"{mean:.0f} (between {low} and {high}); you counted {int(count)}. Divide the logits by the temperature "
            "before the softmax, draw 1,000 samples with torch.multinomial, and count the id of 'pizza' (6)."
        )
        summary.append(f"T={temperature}: {int(count)} ({p:.2%} expected)")
    _correct("5.1", "; ".join(summary) + ". A high temperature flattens the distribution, so even 'pizza' appears.")


def _check_decoding_settings(settings, label: str) -> dict:
    assert isinstance(settings, dict), f"{label} should be a dict like {{'temperature': 1.0, 'top_k': 3}}"
    unknown = set(settings) - {"temperature", "top_k", "top_p"}
    assert not unknown, f"{label} has {sorted(unknown)}; generate's decoding settings are temperature, top_k, top_p"
    assert "temperature" in settings, f"{label} should say its temperature"
    temperature, top_k, top_p = settings["temperature"], settings.get("top_k"), settings.get("top_p")
    assert isinstance(temperature, int | float) and temperature >= 0, (
        f"{label}: temperature={temperature!r}; use 0.0 for greedy decoding or a number above 0 to sample"
    )
    assert top_k is None or isinstance(top_k, int) and top_k >= 1, (
        f"{label}: top_k={top_k!r}; use None (no limit) or a whole number of candidates, at least 1"
    )
    assert top_p is None or isinstance(top_p, int | float) and 0 < top_p <= 1, (
        f"{label}: top_p={top_p!r}; use None or the probability mass to keep, in (0, 1]"
    )
    return dict(settings)


def _sample_toy_tokens(settings: dict, num_samples: int = 1000) -> list[int]:
    """How often each toy word is drawn in `num_samples` next-token picks with `settings` (seeded, RNG untouched)."""
    logits = torch.tensor([TOY_NEXT_TOKEN_LOGITS]).repeat(num_samples, 1)  # one row per sample
    with torch.random.fork_rng():
        torch.manual_seed(123)
        ids = next_token_logits_to_id(logits, **settings)
    return torch.bincount(ids.flatten(), minlength=len(TOY_VOCAB)).tolist()


def _describe_counts(counts: list[int]) -> str:
    ranked = sorted(((c, w) for w, c in zip(TOY_VOCAB, counts) if c), reverse=True)
    return ", ".join(f"{w} {c}" for c, w in ranked)


def check_exercise_5_2(focused_settings, diverse_settings) -> None:
    """Exercise 5.2: sampling settings for predictable output and for varied output, tried on the toy logits."""
    if _not_attempted("5.2", focused_settings, diverse_settings):
        return
    focused = _check_decoding_settings(focused_settings, "focused_settings")
    diverse = _check_decoding_settings(diverse_settings, "diverse_settings")
    assert focused["temperature"] > 0, (
        "focused_settings has temperature 0, which is greedy decoding, not sampling. Keep sampling on "
        "(temperature > 0) and make it focused with a low temperature or a small top_k."
    )
    counts = _sample_toy_tokens(focused)
    share = max(counts) / sum(counts)
    assert share >= 0.95, (
        f"with focused_settings the most common word gets {share:.1%} of 1,000 samples ({_describe_counts(counts)}); "
        "a focused setting should give it at least 95%. Lower the temperature or the top_k."
    )
    focused_counts = counts
    counts = _sample_toy_tokens(diverse)
    words, share = sum(c > 0 for c in counts), max(counts) / sum(counts)
    hint = (f" top_k={diverse['top_k']} allows only {diverse['top_k']} candidates: raise it or use None."
            if diverse.get("top_k") is not None and diverse["top_k"] < 6 else " Raise the temperature.")
    assert words >= 6 and share < 0.5, (
        f"with diverse_settings 1,000 samples give {words} different words, the most common {share:.1%} of the time "
        f"({_describe_counts(counts)}); a diverse setting should give at least 6 words, none above 50%." + hint
    )
    _correct("5.2", f"focused: {_describe_counts(focused_counts)} | diverse: {_describe_counts(counts)}")


def _flat_random_gpt() -> GPTModel:
    """A tiny random GPT whose next-token logits are close together, so any randomness in sampling shows."""
    cfg = {"vocab_size": 64, "context_length": 32, "emb_dim": 32, "n_heads": 2, "n_layers": 2,
           "drop_rate": 0.0, "qkv_bias": False}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPTModel(cfg).eval()
    with torch.no_grad():
        model.out_head.weight.mul_(0.05)  # shrink the logits: the candidates are nearly equally likely
    return model


def check_exercise_5_3(deterministic_settings) -> None:
    """Exercise 5.3: settings of `generate` that make it deterministic (the same tokens whatever the seed)."""
    if _not_attempted("5.3", deterministic_settings):
        return
    assert isinstance(deterministic_settings, list | tuple) and len(deterministic_settings) >= 2, (
        "deterministic_settings should be a list of at least two dicts of generate's settings, e.g. "
        "[{'temperature': ..., 'top_k': ...}, {...}]"
    )
    settings = [_check_decoding_settings(s, f"deterministic_settings[{i}]")
                for i, s in enumerate(deterministic_settings)]
    model = _flat_random_gpt()
    prompt = torch.tensor([[1, 2, 3]])
    greedy = generate(model, prompt, max_new_tokens=20, context_size=32, temperature=0.0)
    for s in settings:
        outputs = []
        for seed in (1, 2, 3):
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                outputs.append(generate(model, prompt, max_new_tokens=20, context_size=32, **s))
        assert all(torch.equal(out, outputs[0]) for out in outputs), (
            f"generate(..., **{s}) gave different tokens with different seeds: it still samples at random. "
            "temperature=0.0 picks the most likely token; with temperature > 0, which top_k leaves a single "
            "candidate? (A low temperature makes sampling less random, not deterministic.)"
        )
        assert torch.equal(outputs[0], greedy), f"generate(..., **{s}) is repeatable but differs from greedy decoding"
    assert any(s["temperature"] == 0 for s in settings), "one of your settings should be greedy: temperature=0.0"
    assert any(s["temperature"] > 0 for s in settings), (
        "all your settings have temperature 0.0. There is also a way to stay deterministic with temperature > 0: "
        "restrict the candidates to one token."
    )
    _correct("5.3", "temperature=0.0 (greedy), or top_k=1 (a single candidate left to sample from), gives "
             "greedy decoding's tokens, generate_text_simple's, whatever the seed.")


def _loader_loss(model, loader) -> float:
    """The model's average batch loss over `loader` in eval mode, leaving its mode and the RNG as they were."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng():
            return calc_loss_loader(loader, model, next(model.parameters()).device)
    finally:
        model.train(was_training)


def check_exercise_5_4(checkpoint_path, model, optimizer, train_losses, train_loader) -> None:
    """Exercise 5.4: a model and AdamW optimizer loaded from the saved checkpoint, then trained one more epoch.

    `train_losses` are the training losses `train_model_simple` returned for that epoch.
    """
    if _not_attempted("5.4", checkpoint_path, model, optimizer, train_losses, train_loader):
        return
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    assert {"model_state_dict", "optimizer_state_dict"} <= set(checkpoint), (
        f"{checkpoint_path} should hold a dict with 'model_state_dict' and 'optimizer_state_dict', as saved in 5.4"
    )
    model_params = {id(p) for p in model.parameters()}
    optimizer_params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimizer_params == model_params, (
        "the optimizer does not hold this model's parameters: create it with "
        "torch.optim.AdamW(model.parameters(), ...) after building the model, then load its state"
    )
    saved_states = checkpoint["optimizer_state_dict"]["state"]
    assert saved_states, f"the optimizer state in {checkpoint_path} is empty: save it after training"
    saved_step = int(next(iter(saved_states.values()))["step"])
    states = optimizer.state_dict()["state"]
    step = int(next(iter(states.values()))["step"]) if states else 0
    per_epoch = len(train_loader)
    assert step != per_epoch, (
        f"the optimizer has taken {step} steps, one epoch from scratch: its state was not loaded. Call "
        "optimizer.load_state_dict(checkpoint['optimizer_state_dict']) before training, so AdamW keeps its moments."
    )
    assert step == saved_step + per_epoch, (
        f"the optimizer has taken {step} steps; the checkpoint's had taken {saved_step}, and one more epoch is "
        f"{per_epoch} steps, so expected {saved_step + per_epoch}. Load the state, then train with num_epochs=1."
    )
    assert len(train_losses) > 0, "train_losses should be the training losses train_model_simple returned"
    saved_model = copy.deepcopy(model)
    saved_model.load_state_dict(checkpoint["model_state_dict"])
    saved_loss = _loader_loss(saved_model, train_loader)
    gap = max(math.log(model.out_head.out_features) - saved_loss, 0.0)  # to the loss of uniform guessing
    assert train_losses[0] <= saved_loss + 0.5 * gap, (
        f"the first training loss of the continued run is {train_losses[0]:.3f}, near an untrained model's, while "
        f"the saved model's is {saved_loss:.3f}: training did not start from the checkpoint. Call "
        "model.load_state_dict(checkpoint['model_state_dict']) before training."
    )
    loss = _loader_loss(model, train_loader)
    assert loss <= saved_loss + 0.25 * gap, (
        f"the model's training loss is {loss:.3f}, far above the saved model's {saved_loss:.3f}: pass the model "
        "you trained, the one that continued from the checkpoint."
    )
    _correct("5.4", f"training loss {saved_loss:.3f} at the checkpoint, {loss:.3f} one epoch later; "
             f"AdamW resumed at step {saved_step} and is now at {step}.")


def check_exercise_5_5(train_loss, val_loss, model, weights_path, train_loader, val_loader) -> None:
    """Exercise 5.5: training and validation losses of the GPTModel loaded from a GPT-2-layout checkpoint."""
    if _not_attempted("5.5", train_loss, val_loss, model, weights_path, train_loader, val_loader):
        return
    from shared.weights import load_gpt2_safetensors, load_weights_into_gpt

    reference = copy.deepcopy(model)
    try:
        load_weights_into_gpt(reference, load_gpt2_safetensors(weights_path))
    except ValueError as err:
        raise AssertionError(f"the model does not fit the weights in {weights_path}: {err}") from err
    for (name, param), expected in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(param, expected), (
            f"the model's {name} differs from the weights in {weights_path}: load them with "
            "load_weights_into_gpt(model, load_gpt2_safetensors(path)) and compute the losses of that model"
        )
    expected_train, expected_val = _loader_loss(model, train_loader), _loader_loss(model, val_loader)
    if abs(train_loss - expected_val) < 1e-3 and abs(val_loss - expected_train) < 1e-3:
        raise AssertionError("train_loss and val_loss are swapped")
    for label, got, expected in (("train_loss", train_loss, expected_train), ("val_loss", val_loss, expected_val)):
        assert abs(got - expected) < 1e-3, (
            f"{label} is {got:.4f}, but calc_loss_loader gives {expected:.4f} for this model (in eval mode, "
            "without gradients). Compute it with calc_loss_loader over all batches of the loader."
        )
    _correct("5.5", f"training loss {expected_train:.3f}, validation loss {expected_val:.3f}.")


def check_exercise_5_6(param_counts: dict) -> None:
    """Exercise 5.6: the parameters of each GPT-2 size as loaded, GPTModel(gpt2_config(name))."""
    if _not_attempted("5.6", param_counts):
        return
    for name, (untied, tied) in GPT2_LOADED_PARAMS.items():
        assert name in param_counts, f"param_counts should have an entry for {name!r}"
        got = param_counts[name]
        assert got in (untied, tied), (
            f"{name}: {got:,} parameters; GPTModel(gpt2_config({name!r})) has {untied:,} ({tied:,} counting the "
            "output head once, since GPT-2 ties it to the token embedding). Build the model from gpt2_config, "
            "which sets qkv_bias=True, on the meta device to count without allocating memory."
        )
    _correct("5.6", "From gpt2 to gpt2-xl the parameters grow 12.5x; at 4 bytes each, gpt2-xl's weights alone "
             "take about 6.2 GB.")


# -- chapter 6 --------------------------------------------------------------------------------------
def check_exercise_6_1(train_dataset, model) -> None:
    """Exercise 6.1: the training texts padded to the model's whole context length, not to the longest text."""
    if _not_attempted("6.1", train_dataset):
        return
    from shared.classification import ClassificationDataset

    assert isinstance(train_dataset, ClassificationDataset), (
        f"train_dataset is a {type(train_dataset).__name__}; build it with ClassificationDataset(csv_file, tokenizer, "
        "max_length=...)"
    )
    context_length = model.pos_emb.weight.shape[0]
    assert train_dataset.max_length == context_length and train_dataset.inputs.shape[1] == context_length, (
        f"the texts are padded to {train_dataset.inputs.shape[1]} tokens, but the model reads {context_length}: "
        "pass max_length=model.pos_emb.weight.shape[0] (the context length) to ClassificationDataset"
    )
    padded = (train_dataset.inputs[:, -1] == train_dataset.pad_token_id).float().mean().item()
    assert padded > 0.5, (
        f"only {padded:.0%} of the texts end in the pad token <|endoftext|>: pad with the tokenizer's "
        "<|endoftext|> id (leave pad_token_id out)"
    )
    _correct("6.1", f"every text is now {context_length} tokens long; {padded:.0%} of them end in padding.")


def check_exercise_6_2(model, num_classes: int) -> None:
    """Exercise 6.2: every parameter of the classifier trainable, not only the last block, final norm and head."""
    if _not_attempted("6.2", model):
        return
    out_features = getattr(getattr(model, "out_head", None), "out_features", None)
    assert out_features == num_classes, (
        f"the model's out_head has {out_features} outputs; replace it with nn.Linear(emb_dim, {num_classes}) first, "
        "as the chapter does"
    )
    frozen = [name for name, param in model.named_parameters() if not param.requires_grad]
    assert not frozen, (
        f"{len(frozen)} parameter tensors are still frozen, e.g. {frozen[0]}: set requires_grad = True on every "
        "parameter (for param in model.parameters(): ...) before making the optimizer"
    )
    total = sum(param.numel() for param in model.parameters())
    _correct("6.2", f"all {total:,} parameters train.")


def check_exercise_6_3(first_token_accuracy, model, data_loader) -> None:
    """Exercise 6.3: the accuracy of a classifier that reads the first token's logits instead of the last's."""
    if _not_attempted("6.3", first_token_accuracy):
        return
    from shared.classification import calc_accuracy_loader

    device = next(model.parameters()).device
    assert isinstance(first_token_accuracy, float) and 0 <= first_token_accuracy <= 1, (
        f"first_token_accuracy is {first_token_accuracy!r}; give the fraction calc_accuracy_loader returns, "
        "a float from 0 to 1"
    )
    expected = calc_accuracy_loader(data_loader, model, device, token_index=0)
    last = calc_accuracy_loader(data_loader, model, device, token_index=-1)
    reads_last = abs(first_token_accuracy - last) < 1e-9 and abs(last - expected) > 1e-9
    hint = " (that is the last token's accuracy)" if reads_last else ""
    assert abs(first_token_accuracy - expected) < 1e-6, (
        f"first_token_accuracy is {first_token_accuracy:.4f}{hint}, but the model reading the first token scores "
        f"{expected:.4f} on this loader: pass token_index=0 to calc_accuracy_loader (and to the training loop)"
    )
    _correct("6.3", f"reading the first token: {expected:.1%}, the last token: {last:.1%} on this loader.")


# (end of chapter 6)


# -- chapter 7 --------------------------------------------------------------------------------------
EXERCISE_7_4_MIN_SCORE = 0.25  # exact match on the 22 first_word test entries (the pretrained model: 0%)

PHI3_EXAMPLES = (
    {"instruction": "Give the first word of this sentence.", "input": "It rained all day.", "output": "It"},
    {"instruction": "Name a novel by Jane Austen.", "input": "", "output": "Emma"},
)


def check_exercise_7_1(format_input_phi3) -> None:
    """Exercise 7.1: a prompt in Phi-3's style, "<|user|>\\n{instruction}\\n{input}" (no input line when empty)."""
    if _not_attempted("7.1", format_input_phi3):
        return
    from shared.instruction import format_input

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
    _correct("7.1", f"each prompt is {saved} characters shorter than Alpaca's; the response then follows "
             "'\\n<|assistant|>\\n'.")


def check_exercise_7_2(collate_fn) -> None:
    """Exercise 7.2: a collate function for items (prompt_length, token_ids) whose prompt targets are -100."""
    if _not_attempted("7.2", collate_fn):
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
    _correct("7.2", "only the response tokens (and the end token) are now learned; the prompt still goes in.")


def _second_word(sentence: str) -> str | None:
    words = [w.strip(",;:.!?\"'") for w in sentence.split()]
    words = [w for w in words if w]
    return words[1] if len(words) > 1 else None


def check_exercise_7_3(new_data) -> None:
    """Exercise 7.3 (offline): a new instruction dataset, "Give the second word of this sentence.", 100+ entries."""
    if _not_attempted("7.3", new_data):
        return
    from shared.instruction import validate_instruction_data

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
    _correct("7.3", f"{len(new_data)} entries in the Alpaca format, every answer right.")


def check_exercise_7_4(lora_model) -> None:
    """Exercise 7.4: the pretrained Austen GPT, instruction-finetuned through LoRA layers only."""
    if _not_attempted("7.4", lora_model):
        return
    from shared.instruction import generate_responses, load_instruction_data, score_responses, split_data
    from shared.lora import LinearWithLoRA
    from shared.pretrained import load_austen_gpt

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
    _correct("7.4", f"{n_trainable:,} of {n_total:,} parameters trained ({n_trainable / n_total:.1%}); "
             f"first_word exact match {score:.0%}.")
# (end of chapter 7)


# -- appendix E -------------------------------------------------------------------------------------
def check_exercise_E_1(num_lora_parameters, model, rank: int) -> None:
    """Exercise E.1: how many parameters LoRA of rank `rank` adds when it wraps every nn.Linear of `model`."""
    if _not_attempted("E.1", num_lora_parameters):
        return
    import torch.nn as nn

    from shared.lora import LinearWithLoRA

    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert not any(isinstance(module, LinearWithLoRA) for module in model.modules()), (
        "pass the model without LoRA (before replace_linear_with_lora): the count is of what LoRA would add to it"
    )
    expected = sum(rank * (layer.in_features + layer.out_features) for layer in linears)
    assert _is_count(num_lora_parameters), f"the answer is {num_lora_parameters!r}; give a whole number of parameters"
    assert int(num_lora_parameters) == expected, (
        f"the answer is {int(num_lora_parameters):,}, but LoRA of rank {rank} adds {expected:,} parameters to "
        f"this model's {len(linears)} linear layers: each gets A (in_features x rank) and B (rank x out_features), "
        "so rank * (in_features + out_features) per layer, and no bias"
    )
    _correct("E.1", f"{expected:,} parameters over {len(linears)} linear layers.")


def check_exercise_E_2(merged_weight, layer) -> None:
    """Exercise E.2: the weight of one nn.Linear with its trained LoRA update folded in."""
    if _not_attempted("E.2", merged_weight):
        return
    from shared.lora import LinearWithLoRA

    assert isinstance(layer, LinearWithLoRA), f"layer is a {type(layer).__name__}; pass the LinearWithLoRA you merged"
    assert layer.lora.B.abs().max() > 0, "this layer's B is still zero: pick a layer of the trained LoRA model"
    linear = layer.linear
    assert isinstance(merged_weight, torch.Tensor) and merged_weight.shape == linear.weight.shape, (
        f"merged_weight should be a tensor of nn.Linear's shape (out_features, in_features) = "
        f"{tuple(linear.weight.shape)}, not {getattr(merged_weight, 'shape', type(merged_weight).__name__)}"
    )
    with torch.no_grad():
        x = torch.randn(4, linear.in_features, dtype=linear.weight.dtype, device=linear.weight.device)
        expected = layer(x)
        got = torch.nn.functional.linear(x, merged_weight.to(x.device), linear.bias)
    error = (got - expected).abs().max().item()
    assert error < 1e-4, (
        f"a layer with your merged weight differs from the LoRA layer by up to {error:.3g}: the update is "
        "(alpha / rank) * (A @ B), transposed to nn.Linear's (out, in) layout, added to linear.weight"
    )
    _correct("E.2", "a plain nn.Linear with this weight gives the LoRA layer's outputs.")


# (end of appendix E)

# -- appendix A -------------------------------------------------------------------------------------
APPENDIX_A_PACKAGES = ("torch", "numpy", "matplotlib", "tiktoken", "tqdm")


def _available_device_types() -> list[str]:
    available = ["cpu"]
    if torch.cuda.is_available():
        available.append("cuda")
    if torch.backends.mps.is_available():
        available.append("mps")
    return available


def check_exercise_A_1(device) -> None:
    """Exercise A.1: a device this machine's PyTorch can compute on, as a torch.device (or its name)."""
    if _not_attempted("A.1", device):
        return
    available = _available_device_types()
    if isinstance(device, str):
        if device.split(":")[0].lower() == "gpu":
            raise AssertionError(
                "PyTorch has no device called 'gpu': an NVIDIA GPU is 'cuda', an Apple-silicon GPU is 'mps'. "
                f"This machine offers {available}."
            )
        try:
            device = torch.device(device)
        except RuntimeError as err:
            raise AssertionError(f"{device!r} is not a device name PyTorch knows ({err}); try 'cpu'") from err
    assert isinstance(device, torch.device), (
        f"the answer is a {type(device).__name__}; give a torch.device, e.g. torch.device('cpu')"
    )
    assert device.type in available, (
        f"this machine cannot compute on {device.type!r}: torch.cuda.is_available() and "
        f"torch.backends.mps.is_available() say it offers {available}. Pick one of those."
    )
    torch.ones(2, device=device).sum().item()  # fails loudly if the device is there but unusable
    _correct("A.1", "a tensor can live and be computed on this device.")


def check_exercise_A_2(versions) -> None:
    """Exercise A.2: the installed version of each package in APPENDIX_A_PACKAGES, read by the reader's code."""
    if _not_attempted("A.2", versions):
        return
    from importlib.metadata import version

    assert isinstance(versions, dict), (
        f"the answer is a {type(versions).__name__}; give a dict from package name to version string, "
        "e.g. {'torch': '2.13.0', ...}"
    )
    missing = [name for name in APPENDIX_A_PACKAGES if name not in versions]
    assert not missing, f"the dict has no entry for {missing}: give one for each of {list(APPENDIX_A_PACKAGES)}"
    for name in APPENDIX_A_PACKAGES:
        installed = version(name)
        got = str(versions[name])
        # A build tag after "+" (torch's "+cpu", "+cu126") may or may not be there, depending on how it was read.
        assert got.split("+")[0] == installed.split("+")[0], (
            f"{name}: the answer says {got!r}, but the installed version is {installed!r}. Read it with "
            "importlib.metadata.version(name)."
        )
    _correct("A.2", f"all {len(APPENDIX_A_PACKAGES)} packages are installed; compare them with requirements.txt.")


def check_exercise_A_3(num_params) -> None:
    """Exercise A.3: the number of parameters of the appendix's NeuralNetwork(2, 2) (hidden layers of 30 and 20)."""
    if _not_attempted("A.3", num_params):
        return
    sizes = [(2, 30), (30, 20), (20, 2)]  # (inputs, outputs) of the three nn.Linear layers
    weights = sum(n_in * n_out for n_in, n_out in sizes)
    biases = sum(n_out for _, n_out in sizes)
    assert _is_count(num_params), f"the answer is {num_params!r}; give a whole number of parameters"
    num_params = int(num_params)
    assert num_params != weights, (
        f"{weights} counts the weights only: every nn.Linear layer also has one bias per output unit"
    )
    assert num_params == weights + biases, (
        f"the answer is {num_params:,}, but NeuralNetwork(2, 2) has a different number of parameters. Its layers "
        "are Linear(2, 30), Linear(30, 20) and Linear(20, 2); each has inputs x outputs weights plus one bias per "
        "output (ReLU has none). Or count them: sum(p.numel() for p in model.parameters())"
    )
    _correct("A.3", f"{weights} weights and {biases} biases.")


def check_exercise_A_4(matmul_by_dots) -> None:
    """Exercise A.4: a matrix product computed one dot product per output element, equal to a @ b."""
    if _not_attempted("A.4", matmul_by_dots):
        return
    assert callable(matmul_by_dots), "the answer should be a function: (a, b) -> the matrix product of a and b"
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 7, generator=generator), torch.rand(7, 3, generator=generator)
    result = matmul_by_dots(a, b)
    assert isinstance(result, torch.Tensor), f"the function returned a {type(result).__name__}; return a tensor"
    assert tuple(result.shape) == (5, 3), (
        f"for a of shape (5, 7) and b of shape (7, 3) the result has shape {tuple(result.shape)}; a @ b has (5, 3): "
        "one entry per row of a and column of b"
    )
    assert torch.allclose(result.to(a.dtype), a @ b, atol=1e-5), (
        "the result differs from a @ b: entry (i, j) is the dot product of row i of a and column j of b, "
        "torch.dot(a[i], b[:, j])"
    )
    _correct("A.4", "the same numbers as a @ b, one Python call per entry instead of one call in all.")


# (end of appendix A)

# -- chapter 8 --------------------------------------------------------------------------------------


def check_exercise_8_1(sgd_momentum_bytes) -> None:
    """Exercise 8.1: bytes per parameter (weights, gradients, optimizer state) of fp32 training with SGD + momentum."""
    if _not_attempted("8.1", sgd_momentum_bytes):
        return
    assert isinstance(sgd_momentum_bytes, (tuple, list)) and len(sgd_momentum_bytes) == 3, (
        f"give three numbers (weights, gradients, optimizer_state), not {sgd_momentum_bytes!r}"
    )
    weights, gradients, state = sgd_momentum_bytes
    assert (weights, gradients) == (4, 4), (
        f"weights and gradients take {weights} and {gradients} bytes; in fp32 each value is 4 bytes"
    )
    assert state == 4, (
        f"the optimizer state takes {state} bytes per parameter; SGD with momentum keeps ONE fp32 buffer "
        "per weight (the running velocity), AdamW two (first and second moments)"
    )
    _correct("8.1", "12 bytes per parameter: AdamW's second moment is what makes it 16.")


def check_exercise_8_2(gb_per_device) -> None:
    """Exercise 8.2: GB per device of GPT-2 XL's weights, gradients and AdamW state (mixed, ZeRO-2, 8 devices)."""
    if _not_attempted("8.2", gb_per_device):
        return
    from shared.memory import estimate_memory
    from shared.transformer import GPT_CONFIG_1558M

    estimate = estimate_memory(GPT_CONFIG_1558M, precision="mixed", strategy="zero2", world_size=8)
    expected = (estimate.parameters + estimate.gradients + estimate.optimizer_state) / 1e9
    assert isinstance(gb_per_device, (int, float)), f"give one number of GB (10^9 bytes), not {gb_per_device!r}"
    ddp = estimate_memory(GPT_CONFIG_1558M, precision="mixed").total / 1e9
    assert abs(gb_per_device - expected) <= 0.01 * expected, (
        f"{gb_per_device} GB is not it. ZeRO-2 keeps the full bf16 weights (2 bytes/param) on every device but "
        f"splits the bf16 gradients (2) and the fp32 master weights and moments (12) over the 8 devices "
        f"(without sharding it would be {ddp:.1f} GB). Leave the activations out."
    )
    _correct("8.2", f"{expected:.2f} GB per device, against {ddp:.1f} GB without sharding.")


def check_exercise_8_3(max_batch_size) -> None:
    """Exercise 8.3: the most 1,024-token sequences GPT-2 small can train on at once in 16 GB (fp32, 1 device)."""
    if _not_attempted("8.3", max_batch_size):
        return
    from shared.memory import estimate_memory
    from shared.transformer import GPT_CONFIG_124M

    budget = 16e9
    fits = [b for b in range(1, 200) if estimate_memory(GPT_CONFIG_124M, batch_size=b).total <= budget]
    expected = max(fits)
    assert isinstance(max_batch_size, int) and not isinstance(max_batch_size, bool), (
        f"give a whole number of sequences, not {max_batch_size!r}"
    )
    per_sequence = estimate_memory(GPT_CONFIG_124M, batch_size=1).activations / 1e9
    assert max_batch_size == expected, (
        f"batch size {max_batch_size} is not the largest that fits. The weights, gradients and AdamW state "
        f"take a fixed 16 bytes/param; each sequence adds {per_sequence:.2f} GB of activations. "
        "Find the largest batch_size whose estimate_memory(...).total is at most 16e9 bytes."
    )
    _correct("8.3", f"{expected} sequences; gradient accumulation reaches a larger batch in several micro-batches.")


def check_exercise_8_4(model) -> None:
    """Exercise 8.4: a GPTModel with activation checkpointing on every other block (0, 2, ...), same gradients."""
    if _not_attempted("8.4", model):
        return
    from shared.memory import CheckpointedBlock, measure_activation_bytes

    blocks = list(model.trf_blocks)
    wrapped = [isinstance(block, CheckpointedBlock) for block in blocks]
    expected = [i % 2 == 0 for i in range(len(blocks))]
    assert wrapped == expected, (
        f"the blocks checkpointed are {[i for i, w in enumerate(wrapped) if w]}; wrap blocks "
        f"{[i for i, e in enumerate(expected) if e]} (every other one, from block 0) in CheckpointedBlock"
    )
    plain = copy.deepcopy(model)
    for i, block in enumerate(plain.trf_blocks):
        if isinstance(block, CheckpointedBlock):
            plain.trf_blocks[i] = block.block
    torch.manual_seed(0)
    tokens = torch.randint(0, model.cfg["vocab_size"], (2, min(16, model.cfg["context_length"]) + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    model.eval(), plain.eval()  # no dropout, so both runs compute the same thing
    model.zero_grad(), plain.zero_grad()
    saved = measure_activation_bytes(model, inputs, targets)
    saved_plain = measure_activation_bytes(plain, inputs, targets)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), f"the gradient of {name} differs from the plain model's"
    assert saved < saved_plain, "checkpointing should keep fewer activations than the plain model"
    _correct("8.4", f"same gradients, {saved / saved_plain:.0%} of the plain model's saved activations.")


# (end of chapter 8)

# -- chapter 9 --------------------------------------------------------------------------------------
SHOUTING_EXAMPLES = [  # (text, should the rule flag it?)
    ("BUY NOW!!! THE BEST PRICES ON ALL CLASSIC NOVELS. FREE DELIVERY TODAY ONLY.", True),
    ("HUGE SALE on every book in the SHOP, ALL WEEKEND", True),  # 22 of 38 letters are capitals
    ("Mr. Knightley and Miss Woodhouse walked to HARTFIELD together that morning.", False),
    ("NEW ARRIVALS: the complete works of Jane Austen, beautifully bound", False),  # 13 of 55
    ("12345 678 !!! ???", False),  # no letters at all
]


def check_exercise_9_1(shouting) -> None:
    """Exercise 9.1: a quality rule `shouting(text) -> bool`, True when more than half of the letters are capitals."""
    if _not_attempted("9.1", shouting):
        return
    from shared.toy_crawl import novel_passages

    assert callable(shouting), "shouting should be a function: def shouting(text: str) -> bool"
    for text, expected in SHOUTING_EXAMPLES:
        got = shouting(text)
        assert bool(got) == expected, (
            f"shouting({text!r}) returned {got}, expected {expected}: count the capitals among the letters only "
            "(str.isalpha, str.isupper), and say True only when they are more than half of the letters."
        )
    passages = novel_passages("emma")
    flagged = [p for p in passages if shouting(p)]
    assert not flagged, f"the rule flags {len(flagged)} genuine passages of Emma, e.g. {flagged[0][:80]!r}"
    _correct("9.1", f"none of Emma's {len(passages)} passages is flagged; shouted adverts are.")


def check_exercise_9_2(jaccard_value) -> None:
    """Exercise 9.2: Jaccard of the word 2-shingles of 'the cat sat on the mat' and 'the cat sat on a mat'."""
    if _not_attempted("9.2", jaccard_value):
        return
    value = float(jaccard_value)
    if abs(value - 3 / 5) < 1e-6:
        raise AssertionError("3/5 divides the shared shingles by the shingles of one sentence; Jaccard divides "
                             "by the union: every distinct shingle of either sentence.")
    assert abs(value - 3 / 7) < 1e-6, (
        f"{value:.4f} is not it. Write out both sets of 2-word shingles ('the cat', 'cat sat', ...), count the "
        "ones they share and the distinct ones of both together, and divide."
    )
    _correct("9.2", "3 shared shingles ('the cat', 'cat sat', 'sat on') out of 7 distinct ones: 3/7 = 0.429.")


def check_exercise_9_3(bands, rows) -> None:
    """Exercise 9.3: bands x rows = 120 slots; J = 0.8 pairs found with p >= 0.99, J = 0.4 pairs with p <= 0.1."""
    if _not_attempted("9.3", bands, rows):
        return
    from shared.dedup import lsh_probability

    assert int(bands) == bands and int(rows) == rows and bands > 0 and rows > 0, "bands and rows are positive integers"
    assert bands * rows == 120, f"{bands} bands of {rows} rows use {bands * rows} slots; the signature has 120"
    high, low = float(lsh_probability(0.8, bands, rows)), float(lsh_probability(0.4, bands, rows))
    assert high >= 0.99, (
        f"with {bands} bands of {rows} rows a pair with Jaccard 0.8 becomes a candidate with probability {high:.3f} "
        "< 0.99: use more bands (of fewer rows) so that near-duplicates are missed less often."
    )
    assert low <= 0.1, (
        f"with {bands} bands of {rows} rows a pair with Jaccard 0.4 becomes a candidate with probability {low:.3f} "
        "> 0.1: use longer bands (more rows) so that merely similar pairs rarely collide."
    )
    _correct("9.3", f"P(candidate) is {high:.4f} at J = 0.8 and {low:.4f} at J = 0.4; the S-curve's midpoint is "
             f"about (1/{bands})^(1/{rows}) = {(1 / bands) ** (1 / rows):.2f}.")


def check_exercise_9_4(num_documents, longest_document, token_file) -> None:
    """Exercise 9.4: the number of documents in a token file, and the longest one's length in tokens (without
    its <|endoftext|>), computed from the memory-mapped ids."""
    if _not_attempted("9.4", num_documents, longest_document):
        return
    import numpy as np

    ends = np.flatnonzero(np.asarray(token_file.tokens) == token_file.eot_id)
    lengths = np.diff(np.concatenate([[-1], ends])) - 1
    assert int(num_documents) == len(ends), (
        f"{num_documents} documents, but the file has {len(ends)} <|endoftext|> ids, one after each document: "
        "count the positions where tokens == eot_id."
    )
    if int(longest_document) == int(lengths.max()) + 1:
        raise AssertionError("that counts the <|endoftext|> after the document too: leave it out.")
    assert int(longest_document) == int(lengths.max()), (
        f"the longest document is not {longest_document} tokens long. Find the <|endoftext|> positions "
        "(np.flatnonzero), take the gaps between them (np.diff), and remember each gap includes one end token."
    )
    _correct("9.4", f"{len(ends)} documents; the longest is {int(lengths.max())} tokens, the mean "
             f"{lengths.mean():.0f}.")


# (end of chapter 9)

# -- chapter 10 -------------------------------------------------------------------------------------
# The shipped model's held-out score (shared/data/models/README.md): summed loss and sizes of Persuasion.
EXERCISE_10_1_TOKENS, EXERCISE_10_1_BYTES, EXERCISE_10_1_PERPLEXITY = 131_130, 466_854, 66.5
EXERCISE_10_2_LOGPROBS = [-12.0, -20.5, -14.0]  # summed log-probabilities of three choices
EXERCISE_10_2_CHOICES = [" She smiled at him.", " Anne could not answer him at all.", " He had gone out."]
EXERCISE_10_4_ITEMS = 40  # the first 40 held-out items of the Austen set


def check_exercise_10_1(bits_per_byte) -> None:
    """Exercise 10.1: perplexity 66.5 over 131,130 tokens of a 466,854-byte text, in bits per byte."""
    if _not_attempted("10.1", bits_per_byte):
        return
    nats = math.log(EXERCISE_10_1_PERPLEXITY) * EXERCISE_10_1_TOKENS  # loss per token x tokens: the total loss
    expected = nats / EXERCISE_10_1_BYTES / math.log(2)
    assert isinstance(bits_per_byte, int | float), f"give a number, got {type(bits_per_byte).__name__}"
    assert abs(bits_per_byte - math.log2(EXERCISE_10_1_PERPLEXITY)) > 0.01, (
        "that is bits per token (log2 of the perplexity): spread the total loss over the bytes instead"
    )
    assert abs(bits_per_byte - expected) < 0.005, (
        f"{bits_per_byte:.4f} is not right: the total loss is ln(perplexity) x tokens nats; divide it by the bytes "
        "and by ln 2 (nats to bits)"
    )
    _correct("10.1", f"{expected:.3f} bits per byte, as the model's README reports.")


def check_exercise_10_2(prediction, prediction_norm) -> None:
    """Exercise 10.2: which of EXERCISE_10_2_CHOICES `acc` and `acc_norm` pick (indices 0-2)."""
    if _not_attempted("10.2", prediction, prediction_norm):
        return
    per_char = [lp / len(c) for lp, c in zip(EXERCISE_10_2_LOGPROBS, EXERCISE_10_2_CHOICES, strict=True)]
    expected = max(range(3), key=EXERCISE_10_2_LOGPROBS.__getitem__)
    expected_norm = max(range(3), key=per_char.__getitem__)
    assert prediction == expected, (
        f"acc picks the choice with the highest summed log-probability (the least negative): not {prediction!r}"
    )
    assert prediction_norm == expected_norm, (
        f"acc_norm divides each log-probability by the choice's length in characters (the leading space counts) "
        f"and picks the highest: not {prediction_norm!r}"
    )
    _correct("10.2", "per character: " + ", ".join(f"{s:.3f}" for s in per_char) + ".")


def check_exercise_10_3(prompt) -> None:
    """Exercise 10.3: the MMLU prompt for one question (see the notebook for the exact question)."""
    if _not_attempted("10.3", prompt):
        return
    from shared.multiple_choice import format_mmlu_prompt

    expected = format_mmlu_prompt("In which town does Anne Elliot meet Captain Wentworth again?",
                                  ["Bath", "Lyme", "Uppercross", "London"], subject="Persuasion")
    assert isinstance(prompt, str), f"the prompt is a string, got {type(prompt).__name__}"
    assert prompt.endswith("\nAnswer:"), "the prompt ends with a line 'Answer:' (no space after the colon)"
    for line in expected.split("\n"):
        assert line in prompt.split("\n"), f"the line {line!r} is missing (or differs)"
    assert prompt == expected, f"close, but not exactly the format; expected:\n{expected}"
    _correct("10.3")


def _exercise_10_4_short_wins() -> tuple[float, float]:
    """How often a half-sentence beats the whole true sentence, summed and per character."""
    from shared.evaluation import score_multiple_choice
    from shared.multiple_choice import MultipleChoiceItem, load_austen_multiple_choice
    from shared.pretrained import load_austen_gpt

    model, tokenizer = load_austen_gpt()
    held_out = [i for i in load_austen_multiple_choice() if i.split == "heldout"][:EXERCISE_10_4_ITEMS]
    items = []
    for item in held_out:
        words = item.choices[item.label].split()
        items.append(MultipleChoiceItem(item.context, (item.choices[item.label],
                                                       " " + " ".join(words[: len(words) // 2])), label=0))
    scores = score_multiple_choice(model, tokenizer, items)
    return (sum(p == 1 for p in scores.predictions) / len(items),
            sum(p == 1 for p in scores.predictions_norm) / len(items))


def check_exercise_10_4(short_wins_sum, short_wins_norm) -> None:
    """Exercise 10.4: the fractions of items in which the half sentence wins, by summed and by normalised score."""
    if _not_attempted("10.4", short_wins_sum, short_wins_norm):
        return
    expected_sum, expected_norm = _exercise_10_4_short_wins()
    assert abs(short_wins_sum - expected_sum) < 0.03, (
        f"summed scores: the half sentence wins {expected_sum:.0%} of the time, not {short_wins_sum:.0%}. Build each "
        "item as (the true choice, ' ' + its first len(words) // 2 words) with label 0, and count predictions == 1"
    )
    assert abs(short_wins_norm - expected_norm) < 0.03, (
        f"normalised scores: the half sentence wins {expected_norm:.0%} of the time, not {short_wins_norm:.0%}: use "
        "predictions_norm"
    )
    _correct("10.4", f"the half sentence wins {expected_sum:.0%} by summed log-probability, {expected_norm:.0%} per "
             "character.")
# (end of chapter 10)

# -- chapter 11 -------------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_exercise_11_1(parameters, tokens, compute: float) -> None:
    """Exercise 11.1: Chinchilla's compute-optimal model size and token count for `compute` FLOPs."""
    if _not_attempted("11.1", parameters, tokens):
        return
    from shared.scaling import CHINCHILLA_TOKENS_PER_PARAMETER, chinchilla_optimal

    parameters, tokens = (float(v) if hasattr(v, "item") else v for v in (parameters, tokens))
    assert _is_number(parameters) and _is_number(tokens) and parameters > 0 and tokens > 0, (
        f"parameters={parameters!r} and tokens={tokens!r}: both should be positive numbers"
    )
    used = 6 * parameters * tokens
    assert abs(used / compute - 1) < 0.01, (
        f"6 * N * D = {used:.3g} FLOPs, not the budget of {compute:.3g}: training costs about 6 FLOPs per "
        "parameter per token (C = 6ND), so N and D must multiply to C / 6"
    )
    ratio = tokens / parameters
    assert abs(ratio / CHINCHILLA_TOKENS_PER_PARAMETER - 1) < 0.01, (
        f"D / N = {ratio:.3g} tokens per parameter; Chinchilla's rule is about {CHINCHILLA_TOKENS_PER_PARAMETER}: "
        "put D = 20 N into C = 6ND and solve for N"
    )
    n_opt, d_opt = chinchilla_optimal(compute)
    _correct("11.1", f"N = {n_opt:.3g} parameters trained on D = {d_opt:.3g} tokens.")


def _chapter_11_largest_budget():
    """(non-embedding parameters, held-out losses) of chapter 11's runs with the largest token budget."""
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "chapters" / "ch11_scaling_laws" / "scaling_results.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    largest = max(int(r["tokens"]) for r in rows)
    rows = sorted((r for r in rows if int(r["tokens"]) == largest), key=lambda r: int(r["non_embedding_parameters"]))
    return ([int(r["non_embedding_parameters"]) for r in rows], [float(r["val_loss"]) for r in rows],
            [int(r["parameters"]) for r in rows])


def check_exercise_11_2(alpha, n_c) -> None:
    """Exercise 11.2: L(N) = (N_c / N)^alpha fitted by hand in log space to the largest-budget runs."""
    if _not_attempted("11.2", alpha, n_c):
        return
    import numpy as np

    from shared.scaling import fit_power_law

    alpha, n_c = (float(v) if hasattr(v, "item") else v for v in (alpha, n_c))
    assert _is_number(alpha) and _is_number(n_c), f"alpha={alpha!r} and n_c={n_c!r} should both be numbers"
    sizes, losses, totals = _chapter_11_largest_budget()
    expected = fit_power_law(sizes, losses)
    with_totals = fit_power_law(totals, losses)
    assert alpha > 0, (
        f"alpha = {alpha:.3g}: the loss falls as N grows, so the slope of log L against log N is negative and "
        "alpha is minus that slope"
    )
    assert not math.isclose(alpha, with_totals.alpha, rel_tol=1e-3) or math.isclose(alpha, expected.alpha), (
        "that is the fit against all parameters; Kaplan's N (and this exercise) leaves out the embeddings: "
        "use the non_embedding_parameters column"
    )
    assert math.isclose(alpha, expected.alpha, rel_tol=1e-3), (
        f"alpha = {alpha:.4f}, but a least-squares line through (log N, log L) of the {len(sizes)} runs with the "
        f"largest token budget has slope -{expected.alpha:.4f}: np.polyfit(np.log(N), np.log(L), 1)"
    )
    assert n_c > 0 and math.isclose(math.log(n_c), math.log(expected.x_c), rel_tol=1e-3), (
        f"n_c = {n_c:.3g}, expected {expected.x_c:.3g}: the intercept b of the line is alpha * log(N_c), so "
        "N_c = exp(b / alpha) (with the same logarithm base as the fit: np.log pairs with np.exp)"
    )
    _correct("11.2", f"L(N) = ({expected.x_c:.3g} / N)^{expected.alpha:.3f}; Kaplan et al. report "
                     f"alpha_N ≈ 0.076 for far larger models (np.polyfit agrees: "
                     f"{-np.polyfit(np.log(sizes), np.log(losses), 1)[0]:.3f}).")


def check_exercise_11_3(factor) -> None:
    """Exercise 11.3: by Kaplan's L(N) = (N_c / N)^0.076, how many times larger must N be to cut the loss by 10%?"""
    if _not_attempted("11.3", factor):
        return
    from shared.scaling import KAPLAN_ALPHA_N

    factor = float(factor) if hasattr(factor, "item") else factor
    assert _is_number(factor), f"factor={factor!r} should be a number"
    expected = (1 / 0.9) ** (1 / KAPLAN_ALPHA_N)
    assert factor > 1, (
        f"factor = {factor:.3g}: a lower loss needs a bigger model, so the factor is more than 1. "
        "L(kN) / L(N) = k^(-alpha) = 0.9; solve for k"
    )
    assert math.isclose(factor, expected, rel_tol=0.01), (
        f"factor = {factor:.3g}, expected {expected:.3g}: L(kN) / L(N) = (1 / k)^alpha_N = 0.9, so "
        "k = (1 / 0.9)^(1 / alpha_N) with alpha_N = 0.076"
    )
    _correct("11.3", f"about {expected:.1f} times the parameters for 10% less loss: power laws make every "
                     "further step cost the same multiple.")


# (end of chapter 11)
