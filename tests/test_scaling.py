"""Chapter 11's scaling-law tools: the fitters recover known laws, the compute arithmetic is right, the
stored sweep has what the notebook needs, and bad input is refused with a clear message."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.scaling import (
    PowerLaw,
    chinchilla_optimal,
    compute_frontier,
    fit_power_law,
    fit_saturating_power_law,
    non_embedding_parameters,
    training_compute,
)
from shared.transformer import GPTModel

CSV_PATH = Path(__file__).resolve().parent.parent / "chapters" / "ch11_scaling_laws" / "scaling_results.csv"
N = np.logspace(4, 7, 10)  # 10k to 10M parameters, the range of small models


@pytest.mark.parametrize("x_c, alpha", [(8.8e13, 0.076), (2.3e8, 0.05), (1e5, 0.5)])
def test_fit_power_law_recovers_an_exact_law(x_c, alpha):
    fit = fit_power_law(N, (x_c / N) ** alpha)
    assert fit.alpha == pytest.approx(alpha, rel=1e-9)
    assert fit.x_c == pytest.approx(x_c, rel=1e-6)


def test_fit_power_law_recovers_a_noisy_law_within_stated_tolerance():
    # 1% multiplicative noise on 40 points over three decades: the exponent within 5%, x_c within a factor 2
    # (x_c sits ~10 decades beyond the data, so a small slope error moves it a lot).
    rng = np.random.default_rng(0)
    x = np.logspace(4, 7, 40)
    y = (8.8e13 / x) ** 0.076 * np.exp(rng.normal(0, 0.01, len(x)))
    fit = fit_power_law(x, y)
    assert fit.alpha == pytest.approx(0.076, rel=0.05)
    assert 0.5 < fit.x_c / 8.8e13 < 2
    assert np.allclose(fit(x), (8.8e13 / x) ** 0.076, rtol=0.01)  # the fitted line itself is close


def test_power_law_prediction():
    law = PowerLaw(x_c=1e6, alpha=0.5)
    assert law(1e4) == pytest.approx(10.0)
    assert law(np.array([1e6, 4e6])).tolist() == pytest.approx([1.0, 0.5])


def test_fit_saturating_power_law_recovers_chinchilla_like_parameters():
    y = 1.69 + 406.4 / N**0.34
    fit = fit_saturating_power_law(N, y)
    assert fit.E == pytest.approx(1.69, rel=1e-4)
    assert fit.A == pytest.approx(406.4, rel=1e-3)
    assert fit.alpha == pytest.approx(0.34, rel=1e-4)
    assert isinstance(fit.E, float)


def test_fit_saturating_power_law_with_noise():
    rng = np.random.default_rng(1)
    x = np.logspace(4, 7, 30)
    y = (2.0 + 300 / x**0.3) * np.exp(rng.normal(0, 0.003, len(x)))
    fit = fit_saturating_power_law(x, y)
    assert fit.E == pytest.approx(2.0, abs=0.15)
    assert fit.alpha == pytest.approx(0.3, rel=0.15)
    assert np.allclose(fit(x), 2.0 + 300 / x**0.3, rtol=0.01)


def test_a_plain_power_law_misses_the_floor_that_the_saturating_fit_finds():
    y = 1.69 + 406.4 / N**0.34
    plain = fit_power_law(N, y)
    saturating = fit_saturating_power_law(N, y)
    plain_error = np.max(np.abs(np.log(plain(N) / y)))
    assert plain_error > 0.01  # the floor bends the log-log line
    assert np.max(np.abs(np.log(saturating(N) / y))) < 1e-6


def test_compute_frontier_keeps_only_runs_no_cheaper_run_beats():
    compute = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0]
    loss = [5.0, 4.5, 4.0, 4.2, 3.5, 3.6]
    assert compute_frontier(compute, loss).tolist() == [0, 2, 4]


def test_training_compute_and_chinchilla_by_hand():
    assert training_compute(1e6, 2e7) == 1.2e14
    # C = 1.2e14 with 20 tokens per parameter: 6 * N * 20 N = 1.2e14, N^2 = 1e12, N = 1e6, D = 2e7.
    parameters, tokens = chinchilla_optimal(1.2e14)
    assert parameters == pytest.approx(1e6)
    assert tokens == pytest.approx(2e7)
    # Chinchilla itself: 70B parameters, 1.4T tokens, C = 6 * 7e10 * 1.4e12 = 5.88e23 FLOPs.
    parameters, tokens = chinchilla_optimal(5.88e23)
    assert parameters == pytest.approx(7e10) and tokens == pytest.approx(1.4e12)
    parameters, tokens = chinchilla_optimal(1.2e14, tokens_per_parameter=120)
    assert tokens / parameters == pytest.approx(120)


@pytest.mark.parametrize("layers, width, heads, qkv_bias", [(1, 32, 2, False), (3, 64, 4, True), (4, 128, 4, False)])
def test_non_embedding_parameters_counts_the_model(layers, width, heads, qkv_bias):
    cfg = {"vocab_size": 100, "context_length": 16, "emb_dim": width, "n_heads": heads, "n_layers": layers,
           "drop_rate": 0.0, "qkv_bias": qkv_bias}
    model = GPTModel(cfg)
    embeddings = {"tok_emb.weight", "pos_emb.weight", "out_head.weight"}
    expected = sum(p.numel() for name, p in model.named_parameters() if name not in embeddings)
    assert non_embedding_parameters(cfg) == expected
    assert torch.is_tensor(next(model.parameters()))


@pytest.mark.parametrize("x, y, message", [
    ([1.0], [2.0], "at least 2 points"),
    ([1.0, 2.0], [2.0], "has 2 values but y has 1"),
    ([1.0, -2.0], [2.0, 1.0], "must be positive"),
    ([1.0, 2.0], [2.0, 0.0], "must be positive"),
    ([1.0, float("nan")], [2.0, 1.0], "must be positive and finite"),
    ([3.0, 3.0], [2.0, 1.0], "all x values are equal"),
    ([1.0, 2.0], [2.0, 2.0], "does not change"),
])
def test_fit_power_law_refuses_bad_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y)


def test_bad_input_elsewhere_is_refused():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_saturating_power_law([1.0, 2.0], [3.0, 2.0])
    with pytest.raises(ValueError, match="compute must be positive"):
        compute_frontier([0.0, 1.0], [3.0, 2.0])
    with pytest.raises(ValueError, match="must be positive"):
        chinchilla_optimal(-1.0)
    with pytest.raises(ValueError, match="must both be positive"):
        training_compute(0, 10)


def test_the_stored_sweep_has_what_the_notebook_needs():
    with open(CSV_PATH, newline="") as f:
        rows = list(csv.DictReader(f))
    needed = {"non_embedding_parameters", "parameters", "tokens", "compute_6nd", "flops_per_token", "val_loss",
              "val_bits_per_byte", "n_layers", "emb_dim", "steps"}
    assert needed <= set(rows[0])
    sizes = {int(r["non_embedding_parameters"]) for r in rows}
    budgets = {int(r["tokens"]) for r in rows}
    assert len(sizes) >= 5 and len(budgets) >= 3
    # Matched budgets: every size trained on every token budget, once.
    assert sorted((int(r["non_embedding_parameters"]), int(r["tokens"])) for r in rows) == sorted(
        (n, d) for n in sizes for d in budgets)
    for r in rows:
        assert int(r["compute_6nd"]) == 6 * int(r["non_embedding_parameters"]) * int(r["tokens"])
        assert 0 < float(r["val_loss"]) < np.log(4096)  # every run learned something: better than uniform guessing
