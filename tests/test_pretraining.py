"""Chapter 5 and appendix D: the loss, the training loops, the learning-rate schedule, precision and decoding.

Every model here is tiny (a vocabulary of 100, 32-dimensional embeddings, two layers, a context of
16 tokens), so the whole file runs in seconds on a laptop CPU.
"""

import copy
import math

import pytest
import torch
from torch.utils.data import DataLoader

from shared import pretraining
from shared.dataloader import GPTDatasetV1
from shared.pretraining import (
    autocast,
    calc_loss_batch,
    calc_loss_loader,
    evaluate_model,
    generate,
    lr_at_step,
    plot_losses,
    resolve_precision,
    text_to_token_ids,
    token_ids_to_text,
    top_p_filter,
    train_model,
    train_model_simple,
    train_step,
)
from shared.tokenization import get_gpt2_tokenizer
from shared.transformer import GPTModel, generate_text_simple

TINY = {"vocab_size": 100, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": False}
TEXT = "the cat sat on the mat. the dog sat on the log. " * 12


pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py


def tiny_model(seed=123, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**TINY, **overrides})


class CharTokenizer:
    """One id per character of a fixed alphabet: small enough for the tiny model's vocabulary."""

    def __init__(self, text=TEXT):
        self.chars = sorted(set(text))
        self.ids = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text, allowed_special=frozenset()):
        return [self.ids[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] if i < len(self.chars) else "?" for i in ids)  # "?": an id beyond the alphabet


def loader(batch_size=4, max_length=8, stride=8, text=TEXT[:164], shuffle=False):
    """Windows of 8 characters; the default text gives 20 windows, 5 batches of 4."""
    dataset = GPTDatasetV1(CharTokenizer().encode(text), None, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=True)


def random_batch(batch_size=8, num_tokens=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TINY["vocab_size"], (batch_size, num_tokens + 1), generator=generator)
    return ids[:, :-1], ids[:, 1:]


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def total_norm(tensors):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])).item()


# -- text <-> ids, the loss -------------------------------------------------------------------------------


def test_text_to_token_ids_and_back():
    tokenizer = get_gpt2_tokenizer()
    text = "Every effort moves you<|endoftext|> forward."
    ids = text_to_token_ids(text, tokenizer)
    assert ids.shape == (1, len(tokenizer.encode(text, allowed_special={"<|endoftext|>"})))
    assert 50256 in ids[0].tolist()  # <|endoftext|> is one special token, not spelled out
    assert token_ids_to_text(ids, tokenizer) == text
    assert token_ids_to_text(ids[0], tokenizer) == text  # a flat sequence decodes too


def test_calc_loss_batch_is_the_mean_cross_entropy_by_hand():
    model = tiny_model().eval()
    inputs, targets = random_batch(batch_size=3, num_tokens=5)
    with torch.no_grad():
        probs = torch.softmax(model(inputs), dim=-1)
        by_hand = -sum(math.log(probs[b, t, targets[b, t]].item()) for b in range(3) for t in range(5)) / 15
        loss = calc_loss_batch(inputs, targets, model, "cpu")
    assert loss.shape == ()
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_calc_loss_loader_averages_the_first_batches():
    model = tiny_model().eval()
    data = loader()
    with torch.no_grad():
        batch_losses = [calc_loss_batch(x, y, model, "cpu").item() for x, y in data]
        assert calc_loss_loader(data, model, "cpu") == pytest.approx(sum(batch_losses) / len(batch_losses))
        assert calc_loss_loader(data, model, "cpu", num_batches=2) == pytest.approx(sum(batch_losses[:2]) / 2)
        # Asking for more batches than there are uses them all.
        assert calc_loss_loader(data, model, "cpu", num_batches=999) == pytest.approx(
            sum(batch_losses) / len(batch_losses))


def test_calc_loss_loader_on_an_empty_loader_says_why():
    empty = DataLoader(GPTDatasetV1(list(range(10)), None, max_length=8, stride=8), batch_size=4, drop_last=True)
    assert len(empty) == 0
    with pytest.raises(ValueError, match="no batches.*smaller batch_size"):
        calc_loss_loader(empty, tiny_model(), "cpu")


def test_evaluate_model_uses_eval_mode_and_restores_training_mode():
    model = tiny_model(drop_rate=0.5)
    data = loader()
    train_loss, val_loss = evaluate_model(model, data, data, "cpu", eval_iter=2)
    assert model.training
    assert train_loss == val_loss  # no dropout while evaluating: the same batches give the same loss
    model.eval()
    with torch.no_grad():
        assert train_loss == pytest.approx(calc_loss_loader(data, model, "cpu", num_batches=2))


# -- the learning-rate schedule ---------------------------------------------------------------------------

SCHEDULE = {"peak_lr": 1e-3, "warmup_steps": 10, "total_steps": 50, "initial_lr": 1e-5, "min_lr": 1e-6}


def test_lr_schedule_starts_peaks_and_ends_where_asked():
    lrs = [lr_at_step(step, **SCHEDULE) for step in range(SCHEDULE["total_steps"])]
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[10] == pytest.approx(1e-3)  # the first step after warmup runs at the peak
    assert lrs[-1] == pytest.approx(1e-6)  # the last step runs at min_lr
    assert max(lrs) == pytest.approx(1e-3)


def test_lr_schedule_rises_during_warmup_and_falls_after():
    lrs = [lr_at_step(step, **SCHEDULE) for step in range(SCHEDULE["total_steps"])]
    warmup, decay = lrs[:11], lrs[10:]
    assert all(a < b for a, b in zip(warmup, warmup[1:]))
    assert all(a > b for a, b in zip(decay, decay[1:]))
    steps = [b - a for a, b in zip(warmup, warmup[1:])]
    assert max(steps) == pytest.approx(min(steps))  # linear: equal increments
    halfway = 10 + (50 - 1 - 10) / 2
    assert lr_at_step(halfway, **SCHEDULE) == pytest.approx((1e-3 + 1e-6) / 2)  # cosine: half-way at the middle


def test_lr_schedule_without_warmup_starts_at_the_peak():
    lrs = [lr_at_step(step, **{**SCHEDULE, "warmup_steps": 0}) for step in range(50)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-6)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


# -- one optimizer step: accumulation, clipping, precision ------------------------------------------------


def test_accumulating_four_micro_batches_equals_one_big_batch():
    big = tiny_model()
    small = copy.deepcopy(big)
    inputs, targets = random_batch(batch_size=8)
    opt_big = torch.optim.SGD(big.parameters(), lr=0.1)  # SGD: the update is proportional to the gradient
    opt_small = torch.optim.SGD(small.parameters(), lr=0.1)

    loss_big, _ = train_step(big, [(inputs, targets)], opt_big, "cpu")
    micro = [(inputs[i : i + 2], targets[i : i + 2]) for i in range(0, 8, 2)]
    loss_small, _ = train_step(small, micro, opt_small, "cpu")

    assert loss_small == pytest.approx(loss_big, rel=1e-5)
    for g_big, g_small in zip(grads(big), grads(small)):
        torch.testing.assert_close(g_small, g_big, rtol=1e-4, atol=1e-6)
    for p_big, p_small in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(p_small, p_big, rtol=1e-5, atol=1e-6)
    # A loop that forgot to divide by the number of micro-batches would be 4 times off:
    assert not torch.allclose(grads(small)[0] * 4, grads(big)[0])


def test_clipping_caps_the_norm_and_returns_the_norm_before():
    model = tiny_model()
    reference = copy.deepcopy(model)
    batch = random_batch()
    calc_loss_batch(*batch, reference, "cpu").backward()
    norm_before = total_norm(grads(reference))
    max_norm = norm_before / 4

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: look at the gradients, keep the weights
    _, returned = train_step(model, [batch], optimizer, "cpu", max_norm=max_norm)
    assert returned == pytest.approx(norm_before, rel=1e-5)
    assert total_norm(grads(model)) == pytest.approx(max_norm, rel=1e-4)
    for clipped, original in zip(grads(model), grads(reference)):  # same direction, a quarter of the length
        torch.testing.assert_close(clipped, original / 4, rtol=1e-4, atol=1e-7)


def test_no_clipping_below_the_threshold_and_none_without_it():
    model = tiny_model()
    reference = copy.deepcopy(model)
    batch = random_batch()
    calc_loss_batch(*batch, reference, "cpu").backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    _, returned = train_step(model, [batch], optimizer, "cpu", max_norm=1e6)
    assert returned == pytest.approx(total_norm(grads(reference)), rel=1e-5)
    for g, g_ref in zip(grads(model), grads(reference)):
        torch.testing.assert_close(g, g_ref)
    assert train_step(model, [batch], optimizer, "cpu")[1] is None


def test_train_step_sets_the_learning_rate():
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)
    train_step(model, [random_batch()], optimizer, "cpu", lr=3e-4)
    assert [group["lr"] for group in optimizer.param_groups] == [3e-4]


def test_bf16_on_cpu_stays_close_to_fp32():
    fp32, bf16 = tiny_model(), tiny_model()
    opt32 = torch.optim.AdamW(fp32.parameters(), lr=1e-3)
    opt16 = torch.optim.AdamW(bf16.parameters(), lr=1e-3)
    batch = random_batch()
    for _ in range(3):
        loss32, _ = train_step(fp32, [batch], opt32, "cpu", precision="fp32")
        loss16, _ = train_step(bf16, [batch], opt16, "cpu", precision="bf16")
        assert loss16 == pytest.approx(loss32, abs=0.02)  # bf16 keeps about 3 significant digits
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # the weights stay fp32


def test_autocast_runs_matrix_products_in_bf16_only_when_asked():
    x = torch.randn(2, 4)
    layer = torch.nn.Linear(4, 3)
    with autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert layer(x).dtype == torch.float32


def test_resolve_precision():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"  # bf16 autocast is slow on most CPUs
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("precision", ["fp16", "float32", "BF16", ""])
def test_resolve_precision_rejects_other_names(precision):
    with pytest.raises(ValueError, match=r"use 'fp32', 'bf16' or 'auto'"):
        resolve_precision(precision, "cpu")


def test_asking_for_fp16_explains_why_it_is_not_offered():
    with pytest.raises(ValueError, match="fp16 needs a gradient scaler and is not offered"):
        resolve_precision("fp16", "cpu")


def test_bf16_on_a_device_without_autocast_is_a_clear_error():
    with pytest.raises(ValueError, match="not available on meta: use precision='fp32'"):
        resolve_precision("bf16", "meta")


# -- the training loops -----------------------------------------------------------------------------------


def test_train_model_rejects_warmup_longer_than_training():
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = loader()  # 5 batches
    with pytest.raises(ValueError, match="warmup_steps=10 but training has only 10 optimizer steps"):
        train_model(model, data, data, optimizer, "cpu", 2, 5, 1, "the", CharTokenizer(), warmup_steps=10)
    with pytest.raises(ValueError, match="warmup_steps=4 but training has only 4 optimizer steps"):
        train_model(model, data, data, optimizer, "cpu", 2, 5, 1, "the", CharTokenizer(), warmup_steps=4,
                    accumulation_steps=4)  # 5 batches in groups of 4: 2 steps per epoch
    with pytest.raises(ValueError, match="must be at least 1"):
        train_model(model, data, data, optimizer, "cpu", 2, 0, 1, "the", CharTokenizer(), warmup_steps=1)


def test_train_model_follows_the_schedule_and_learns(capsys):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    data = loader(shuffle=True)  # 5 batches of 4 x 8 tokens
    torch.manual_seed(0)
    train_losses, val_losses, tokens_seen, lrs = train_model(
        model, data, data, optimizer, "cpu", n_epochs=8, eval_freq=5, eval_iter=5, start_context="the ",
        tokenizer=CharTokenizer(), warmup_steps=8, initial_lr=1e-4, min_lr=1e-5)
    expected = [lr_at_step(s, peak_lr=1e-2, warmup_steps=8, total_steps=40, initial_lr=1e-4, min_lr=1e-5)
                for s in range(40)]
    assert lrs == pytest.approx(expected)
    assert len(train_losses) == len(val_losses) == len(tokens_seen) == 8  # steps 0, 5, ..., 35
    assert tokens_seen == [(step + 1) * 32 for step in range(0, 40, 5)]
    assert train_losses[0] > 4.0  # about ln(100): guessing among 100 tokens
    assert train_losses[-1] < 1.5  # the repetitive text is learned
    assert train_losses == sorted(train_losses, reverse=True)
    printed = capsys.readouterr().out
    assert printed.count("Train loss") == 8 and printed.count("\nthe ") == 8  # a sample after each epoch


def test_train_model_clips_only_after_warmup(monkeypatch):
    calls = []

    def recording_train_step(*args, **kwargs):
        calls.append(kwargs["max_norm"])
        return train_step(*args, **kwargs)

    monkeypatch.setattr(pretraining, "train_step", recording_train_step)
    model = tiny_model()
    data = loader()
    train_model(model, data, data, torch.optim.AdamW(model.parameters(), lr=1e-3), "cpu", 2, 100, 1, "the",
                CharTokenizer(), warmup_steps=4, max_norm=0.5, print_sample=False)
    assert calls == [None] * 4 + [0.5] * 6


def test_train_model_with_accumulation_matches_a_big_batch_loader():
    """Batches of 2 with accumulation_steps=2 train exactly like batches of 4 (no dropout, no shuffling)."""
    val_data = loader(batch_size=4)
    models, results = [], []
    for batch_size, accumulation_steps in [(4, 1), (2, 2)]:
        model = tiny_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        results.append(train_model(model, loader(batch_size=batch_size), val_data, optimizer, "cpu", 2, 2, 5, "the",
                                   CharTokenizer(), warmup_steps=2, max_norm=0.5,
                                   accumulation_steps=accumulation_steps, print_sample=False))
        models.append(model)
    (_, val_big, tokens_big, lrs_big), (_, val_acc, tokens_acc, lrs_acc) = results
    assert len(lrs_big) == 10 and lrs_acc == lrs_big  # 5 optimizer steps per epoch either way
    assert tokens_acc == tokens_big
    assert val_acc == pytest.approx(val_big, abs=1e-4)
    assert val_big[-1] < val_big[0]
    for p_big, p_acc in zip(*(model.parameters() for model in models)):
        torch.testing.assert_close(p_acc, p_big, rtol=1e-4, atol=1e-5)


def test_train_model_simple_evaluates_every_eval_freq_steps(capsys):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = loader()  # 5 batches: 15 steps in 3 epochs
    train_losses, val_losses, tokens_seen = train_model_simple(
        model, data, data, optimizer, "cpu", num_epochs=3, eval_freq=4, eval_iter=1, start_context="the ",
        tokenizer=CharTokenizer())
    assert len(train_losses) == len(val_losses) == len(tokens_seen) == 4  # steps 0, 4, 8, 12
    assert tokens_seen == [32, 160, 288, 416]
    printed = capsys.readouterr().out
    assert "Ep 1 (Step 000000)" in printed and "Ep 3 (Step 000012)" in printed


def test_plot_losses_draws_both_curves():
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_losses([0, 1, 2], [10, 20, 30], [3.0, 2.0, 1.0], [3.5, 2.5, 2.0])
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["Training loss", "Validation loss"]
    assert list(lines[1].get_ydata()) == [3.5, 2.5, 2.0]
    assert fig.axes[1].get_xlabel() == "Tokens seen"


# -- decoding ---------------------------------------------------------------------------------------------


def reference_generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, top_p=None,
                       eos_id=None):
    """The book's loop, without a cache, plus a nucleus (top-p) filter written out token by token."""
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(idx[:, -context_size:])[:, -1, :]
        if top_k is not None:
            top_logits, _ = torch.topk(logits, top_k)
            logits = torch.where(logits < top_logits[:, -1:], torch.tensor(float("-inf")), logits)
        if temperature > 0.0:
            logits = logits / temperature
            if top_p is not None:
                for row in range(logits.shape[0]):
                    probs = torch.softmax(logits[row], dim=-1).tolist()
                    ranked = sorted(range(len(probs)), key=lambda i: -probs[i])  # Python's sort is stable
                    kept, mass = [], 0.0
                    for i in ranked:
                        kept.append(i)
                        mass += probs[i]
                        if mass >= top_p:
                            break
                    dropped = torch.ones(len(probs), dtype=torch.bool)
                    dropped[kept] = False
                    logits[row] = logits[row].masked_fill(dropped, float("-inf"))
            idx_next = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)
        else:
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        if idx_next == eos_id:
            break
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def prompt(batch=1, length=4, seed=1):
    return torch.randint(0, TINY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prompt_len, new_tokens, batch", [(4, 8, 1), (3, 6, 2), (12, 20, 1)])
def test_greedy_generate_equals_generate_text_simple(prompt_len, new_tokens, batch):
    model = tiny_model().eval()
    idx = prompt(batch, prompt_len)
    expected = generate_text_simple(model, idx, new_tokens, context_size=16)
    assert torch.equal(generate(model, idx, new_tokens, context_size=16), expected)


@pytest.mark.parametrize("settings", [
    {"temperature": 1.0},
    {"temperature": 1.5, "top_k": 10},
    {"temperature": 0.8, "top_p": 0.9},
    {"temperature": 1.2, "top_k": 20, "top_p": 0.7},
])
@pytest.mark.parametrize("prompt_len, new_tokens", [(4, 10), (12, 20)])  # the second runs past the context
def test_sampling_equals_the_books_loop_with_the_same_seed(settings, prompt_len, new_tokens):
    model = tiny_model().eval()
    idx = prompt(1, prompt_len)
    torch.manual_seed(42)
    expected = reference_generate(model, idx, new_tokens, 16, **settings)
    torch.manual_seed(42)
    got = generate(model, idx, new_tokens, 16, **settings)
    assert torch.equal(got, expected)
    torch.manual_seed(43)
    assert not torch.equal(generate(model, idx, new_tokens, 16, **settings), expected)  # it does sample


def test_top_k_1_is_greedy_at_any_temperature():
    model = tiny_model().eval()
    idx = prompt(2, 5)
    greedy = generate(model, idx, 12, 16)
    torch.manual_seed(0)
    assert torch.equal(generate(model, idx, 12, 16, temperature=5.0, top_k=1), greedy)


# Two rows of hand-made probabilities, with ties: row 0 has 0.2 at ids 0 and 3, row 1 has 0.04 at ids 0 and 1.
PROBS = [[0.2, 0.1, 0.5, 0.2],
         [0.04, 0.04, 0.6, 0.32]]


@pytest.mark.parametrize("top_p, kept", [
    (0.45, [{2}, {2}]),  # the top token alone reaches 0.45 in both rows
    (0.65, [{2, 0}, {2, 3}]),  # row 0: 0.5 falls short, 0.5 + 0.2 reaches it; of the tied ids, 0 comes first
    (0.85, [{2, 0, 3}, {2, 3}]),
    (0.95, [{0, 1, 2, 3}, {2, 3, 0}]),  # row 1: 0.92 falls short, and id 0 wins the tie with id 1
])
def test_top_p_filter_keeps_the_smallest_set_reaching_p(top_p, kept):
    logits = torch.log(torch.tensor(PROBS))
    filtered = top_p_filter(logits, top_p)
    for row in range(2):
        assert set(torch.isfinite(filtered[row]).nonzero().flatten().tolist()) == kept[row]
    finite = torch.isfinite(filtered)
    assert torch.equal(filtered[finite], logits[finite])  # the kept logits are unchanged
    assert torch.all(filtered[~finite] == float("-inf"))


def test_top_p_1_keeps_every_token_even_when_the_float_sum_reaches_1_early():
    logits = torch.tensor([[30.0, 0.0, 0.0, 0.0]])  # the last three have probability ~1e-13 each
    assert torch.softmax(logits, dim=-1)[0, 0].item() == 1.0  # in float32 the first alone sums to 1
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    assert torch.isfinite(top_p_filter(logits, 0.999)).tolist() == [[True, False, False, False]]


def first_new_token_not_at_start(tokens):
    """A token of a greedy continuation whose first occurrence is not the first position, and that position."""
    for position, token in enumerate(tokens):
        if position > 0 and token not in tokens[:position]:
            return token, position
    raise AssertionError(f"the greedy continuation {tokens} repeats one token: pick another seed")


def test_eos_stops_a_single_sequence_without_appending_it():
    model = tiny_model().eval()
    idx = prompt(1, 4)
    greedy = generate(model, idx, 12, 16)[0, 4:].tolist()
    eos_id, position = first_new_token_not_at_start(greedy)
    out = generate(model, idx, 12, 16, eos_id=eos_id)
    assert out[0].tolist() == idx[0].tolist() + greedy[:position]  # stopped early, eos not appended
    assert torch.equal(out, reference_generate(model, idx, 12, 16, eos_id=eos_id))


def test_eos_in_a_batch_pads_finished_rows_until_all_are_done():
    model = tiny_model().eval()
    idx = prompt(2, 4, seed=3)
    greedy = [generate(model, idx[row : row + 1], 12, 16)[0, 4:].tolist() for row in range(2)]
    eos_id, position = first_new_token_not_at_start(greedy[0])
    out = generate(model, idx, 12, 16, eos_id=eos_id)
    finished_at = [g.index(eos_id) if eos_id in g else None for g in greedy]
    length = max(finished_at) if None not in finished_at else 12  # stops when every row has produced eos
    assert out.shape == (2, 4 + length)
    assert out[0, 4:].tolist() == greedy[0][:position] + [eos_id] * (length - position)  # padded with eos
    row1_end = finished_at[1] if finished_at[1] is not None else length
    assert out[1, 4 : 4 + row1_end].tolist() == greedy[1][:row1_end]
    assert length > position  # row 0 finished while row 1 went on: the padding was exercised


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -1.0}, "temperature=-1.0 is not a number >= 0"),
    ({"temperature": 1.0, "top_k": 0}, "top_k=0: keep at least 1 token"),
    ({"temperature": 1.0, "top_p": 0.0}, r"top_p=0.0 is not in \(0, 1\]"),
    ({"temperature": 1.0, "top_p": 1.5}, r"top_p=1.5 is not in \(0, 1\]"),
])
def test_bad_decoding_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_model(), prompt(), 5, 16, **kwargs)


def test_generation_past_the_context_length_rebuilds_the_cache():
    model = tiny_model().eval()
    idx = prompt(2, 10)
    out = generate(model, idx, 30, context_size=16)  # 40 tokens from a model that sees 16
    assert out.shape == (2, 40)
    assert torch.equal(out, generate_text_simple(model, idx, 30, context_size=16))
