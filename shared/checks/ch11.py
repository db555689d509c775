"""Checks for chapter 11's exercises (scaling laws): Chinchilla's optimum, a power law fitted by hand, Kaplan's N."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from shared.checks.common import correct, not_attempted
from shared.scaling import CHINCHILLA_TOKENS_PER_PARAMETER, KAPLAN_ALPHA_N, chinchilla_optimal, fit_power_law

SCALING_RESULTS = Path(__file__).resolve().parents[2] / "chapters" / "ch11_scaling_laws" / "scaling_results.csv"


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_exercise_11_1(parameters, tokens, compute: float) -> None:
    """Exercise 11.1: Chinchilla's compute-optimal model size and token count for `compute` FLOPs."""
    if not_attempted("11.1", parameters, tokens):
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
    correct("11.1", f"N = {n_opt:.3g} parameters trained on D = {d_opt:.3g} tokens.")


def _chapter_11_largest_budget():
    """(non-embedding parameters, held-out losses, all parameters) of chapter 11's runs with the most tokens."""
    with open(SCALING_RESULTS, newline="") as f:
        rows = list(csv.DictReader(f))
    largest = max(int(r["tokens"]) for r in rows)
    rows = sorted((r for r in rows if int(r["tokens"]) == largest), key=lambda r: int(r["non_embedding_parameters"]))
    return ([int(r["non_embedding_parameters"]) for r in rows], [float(r["val_loss"]) for r in rows],
            [int(r["parameters"]) for r in rows])


def check_exercise_11_2(alpha, n_c) -> None:
    """Exercise 11.2: L(N) = (N_c / N)^alpha fitted by hand in log space to the largest-budget runs."""
    if not_attempted("11.2", alpha, n_c):
        return
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
    correct("11.2", f"L(N) = ({expected.x_c:.3g} / N)^{expected.alpha:.3f}; Kaplan et al. report "
                     f"alpha_N ≈ 0.076 for far larger models (np.polyfit agrees: "
                     f"{-np.polyfit(np.log(sizes), np.log(losses), 1)[0]:.3f}).")


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
