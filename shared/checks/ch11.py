"""Checks for chapter 11's exercises (scaling laws): a power law fitted by hand, Chinchilla's optimum, Kaplan's N."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from shared.checks.common import correct, not_attempted
from shared.scaling import (
    CHINCHILLA_TOKENS_PER_PARAMETER,
    KAPLAN_ALPHA_D,
    KAPLAN_ALPHA_N,
    chinchilla_optimal,
    fit_power_law,
)

SCALING_RESULTS = Path(__file__).resolve().parents[2] / "chapters" / "ch11_scaling_laws" / "scaling_results.csv"


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _chapter_11_largest_model():
    """(tokens, held-out losses, optimizer steps) of chapter 11's runs of its largest model, by tokens."""
    with open(SCALING_RESULTS, newline="") as f:
        rows = list(csv.DictReader(f))
    largest = max(int(r["non_embedding_parameters"]) for r in rows)
    rows = sorted((r for r in rows if int(r["non_embedding_parameters"]) == largest), key=lambda r: int(r["tokens"]))
    return [int(r["tokens"]) for r in rows], [float(r["val_loss"]) for r in rows], [int(r["steps"]) for r in rows]


def check_exercise_11_1(alpha_d, d_c) -> None:
    """Exercise 11.1: L(D) = (D_c / D)^alpha_D fitted by hand in log space to the largest model's runs."""
    if not_attempted("11.1", alpha_d, d_c):
        return
    alpha_d, d_c = (float(v) if hasattr(v, "item") else v for v in (alpha_d, d_c))
    assert _is_number(alpha_d) and _is_number(d_c), f"alpha_d={alpha_d!r} and d_c={d_c!r} should both be numbers"
    tokens, losses, steps = _chapter_11_largest_model()
    expected = fit_power_law(tokens, losses)
    assert alpha_d > 0, (
        f"alpha_d = {alpha_d:.3g}: the loss falls as D grows, so the slope of log L against log D is negative and "
        "alpha_D is minus that slope"
    )
    assert math.isclose(alpha_d, expected.alpha, rel_tol=1e-3), (
        f"alpha_d = {alpha_d:.4f}, but a least-squares line through (log D, log L) of the largest model's "
        f"{len(tokens)} runs has slope -{expected.alpha:.4f}: take the rows with the largest "
        "non_embedding_parameters and fit np.log(val_loss) against np.log(tokens)"
    )
    assert d_c > 0, f"d_c = {d_c:.3g}: D_c is a number of tokens, so it is positive: D_c = exp(b / alpha_D)"
    assert not math.isclose(math.log(d_c), math.log(fit_power_law(steps, losses).x_c), rel_tol=1e-3), (
        "that D_c is in optimizer steps: D counts tokens, so fit against the tokens column (8 x 128 per step)"
    )
    assert math.isclose(math.log(d_c), math.log(expected.x_c), rel_tol=1e-3), (
        f"d_c = {d_c:.3g}, expected {expected.x_c:.3g}: the intercept b of the line is alpha_D * log(D_c), so "
        "D_c = exp(b / alpha_D) (with the same logarithm base as the fit: np.log pairs with np.exp)"
    )
    correct("11.1", f"L(D) = ({expected.x_c:.3g} / D)^{expected.alpha:.3f}; Kaplan et al. report "
                     f"alpha_D ≈ {KAPLAN_ALPHA_D} (np.polyfit agrees: "
                     f"{-np.polyfit(np.log(tokens), np.log(losses), 1)[0]:.3f}).")


def check_exercise_11_2(parameters, tokens, compute: float) -> None:
    """Exercise 11.2: Chinchilla's compute-optimal model size and token count for `compute` FLOPs."""
    if not_attempted("11.2", parameters, tokens):
        return
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
    correct("11.2", f"N = {n_opt:.3g} parameters trained on D = {d_opt:.3g} tokens.")


def check_exercise_11_3(factor) -> None:
    """Exercise 11.3: by Kaplan's L(N) = (N_c / N)^0.076, how many times larger must N be to cut the loss by 10%?"""
    if not_attempted("11.3", factor):
        return
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
    correct("11.3", f"about {expected:.1f} times the parameters for 10% less loss: power laws make every "
                     "further step cost the same multiple.")
