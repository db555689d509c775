"""Checks for chapter 5's exercises (pretraining): decoding settings, resuming from a checkpoint, GPT-2's weights."""

from __future__ import annotations

import copy
import math

import torch

from shared.checks.common import correct, is_count, not_attempted
from shared.pretraining import calc_loss_loader, generate, next_token_logits_to_id
from shared.transformer import GPTModel
from shared.weights import load_gpt2_safetensors, load_weights_into_gpt

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


def check_exercise_5_1(pizza_counts) -> None:
    """Exercise 5.1: how often "pizza" comes up in 1,000 samples at temperatures 1, 0.1 and 5."""
    if not_attempted("5.1", pizza_counts):
        return
    assert isinstance(pizza_counts, dict) and set(pizza_counts) == {1, 0.1, 5}, (
        "pizza_counts should be a dict with one entry per temperature: {1: count, 0.1: count, 5: count}"
    )
    logits = torch.tensor(TOY_NEXT_TOKEN_LOGITS)
    pizza = TOY_VOCAB.index("pizza")
    summary = []
    for temperature, count in sorted(pizza_counts.items()):
        assert is_count(count) and 0 <= int(count) <= 1000, (
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
    correct("5.1", "; ".join(summary) + ". A high temperature flattens the distribution, so even 'pizza' appears.")


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
    if not_attempted("5.2", focused_settings, diverse_settings):
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
    correct("5.2", f"focused: {_describe_counts(focused_counts)} | diverse: {_describe_counts(counts)}")


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
    if not_attempted("5.3", deterministic_settings):
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
    correct("5.3", "temperature=0.0 (greedy), or top_k=1 (a single candidate left to sample from), gives "
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
    if not_attempted("5.4", checkpoint_path, model, optimizer, train_losses, train_loader):
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
    correct("5.4", f"training loss {saved_loss:.3f} at the checkpoint, {loss:.3f} one epoch later; "
             f"AdamW resumed at step {saved_step} and is now at {step}.")


def check_exercise_5_5(train_loss, val_loss, model, weights_path, train_loader, val_loader) -> None:
    """Exercise 5.5: training and validation losses of the GPTModel loaded from a GPT-2-layout checkpoint."""
    if not_attempted("5.5", train_loss, val_loss, model, weights_path, train_loader, val_loader):
        return
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
    correct("5.5", f"training loss {expected_train:.3f}, validation loss {expected_val:.3f}.")


def check_exercise_5_6(param_counts: dict) -> None:
    """Exercise 5.6: the parameters of each GPT-2 size as loaded, GPTModel(gpt2_config(name))."""
    if not_attempted("5.6", param_counts):
        return
    for name, (untied, tied) in GPT2_LOADED_PARAMS.items():
        assert name in param_counts, f"param_counts should have an entry for {name!r}"
        got = param_counts[name]
        assert got in (untied, tied), (
            f"{name}: {got:,} parameters; GPTModel(gpt2_config({name!r})) has {untied:,} ({tied:,} counting the "
            "output head once, since GPT-2 ties it to the token embedding). Build the model from gpt2_config, "
            "which sets qkv_bias=True, on the meta device to count without allocating memory."
        )
    correct("5.6", "From gpt2 to gpt2-xl the parameters grow 12.5x; at 4 bytes each, gpt2-xl's weights alone "
             "take about 6.2 GB.")
