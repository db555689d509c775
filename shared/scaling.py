"""Scaling laws (chapter 11): power-law fits of loss against size and compute, and compute accounting.

Kaplan et al. (2020) found that a language model's held-out loss falls as a power law in its
non-embedding parameter count N, in the tokens D it trains on, and in its training compute C ≈ 6ND;
Hoffmann et al. (2022, "Chinchilla") found that for a fixed compute budget N and D should grow
together, about 20 tokens per parameter. Everything here is plain numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Published figures, quoted (not measured here). Kaplan et al. 2020, "Scaling Laws for Neural Language
# Models", eq. 1.1 to 1.3: loss in nats per token on WebText2, N without embeddings, D in tokens, C in PF-days.
KAPLAN_ALPHA_N = 0.076
KAPLAN_N_C = 8.8e13
KAPLAN_ALPHA_D = 0.095
KAPLAN_D_C = 5.4e13
KAPLAN_ALPHA_C = 0.050
KAPLAN_C_C_PF_DAYS = 3.1e8
# Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models": about 20 training tokens per
# parameter is compute-optimal, and their fitted L(N, D) = E + A / N^alpha + B / D^beta (approach 3).
CHINCHILLA_TOKENS_PER_PARAMETER = 20
CHINCHILLA_LOSS_FIT = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def non_embedding_parameters(cfg: dict) -> int:
    """Parameters of a `GPTModel` with this config, leaving out the token and position embeddings and the
    output head (Kaplan's N: the vocabulary matrices scale with the tokenizer, not with the model's depth)."""
    d, layers = cfg["emb_dim"], cfg["n_layers"]
    attention = 4 * d * d + d + (3 * d if cfg.get("qkv_bias") else 0)  # W_query, W_key, W_value, out_proj
    feed_forward = 8 * d * d + 5 * d  # d -> 4d -> d, with biases
    norms = 4 * d  # norm1 and norm2: scale and shift each
    return layers * (attention + feed_forward + norms) + 2 * d  # + the final norm


def flops_per_token(cfg: dict) -> float:
    """Training FLOPs per token of a GPTModel: 6 per weight in a matrix product (forward + backward), plus attention.

    The weights that multiply are each block's 12 * width**2 (query, key, value and output
    projections, and the 4x-wide feed-forward) and the output head's vocabulary * width; the
    embeddings are looked up, which costs no FLOPs. Attention's scores and weighted sums add
    12 * layers * context * width (all of the causal square, which the kernels compute). The
    numerator of MFU (model FLOPs utilisation); `training_compute` is Kaplan's cruder 6ND.
    Chapter 12's configs (with `hidden_dim` or `num_experts`) count their own projections: grouped
    key/value heads, `head_dim`, SwiGLU's three matrices, or the chosen experts and the router.
    """
    d, layers = cfg["emb_dim"], cfg["n_layers"]
    if "hidden_dim" not in cfg and "num_experts" not in cfg:  # GPTModel
        per_block, attention_width = 12 * d * d, d
    else:
        head_dim = cfg.get("head_dim") or d // cfg["n_heads"]
        attention_width = cfg["n_heads"] * head_dim
        per_block = 2 * d * attention_width + 2 * d * cfg["n_kv_groups"] * head_dim
        if cfg.get("num_experts", 0) > 0:
            per_block += cfg["num_experts_per_tok"] * 3 * d * cfg["moe_intermediate_size"] + d * cfg["num_experts"]
        else:
            per_block += 3 * d * cfg["hidden_dim"]
    multiplying = layers * per_block + cfg["vocab_size"] * d
    return 6 * multiplying + 12 * layers * cfg["context_length"] * attention_width


def training_compute(parameters: float, tokens: float) -> float:
    """Training FLOPs, C ≈ 6ND: 2 per parameter per token for the forward pass, 4 for the backward pass."""
    if parameters <= 0 or tokens <= 0:
        raise ValueError(f"parameters ({parameters}) and tokens ({tokens}) must both be positive.")
    return 6.0 * parameters * tokens


def _as_positive_points(x, y, x_name: str = "x", y_name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """x and y as float arrays of equal length, at least two points, every value finite and positive."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"{x_name} has {len(x)} values but {y_name} has {len(y)}: pass one {y_name} per {x_name}.")
    if len(x) < 2:
        raise ValueError(f"a power law needs at least 2 points to fit; got {len(x)}.")
    for name, values in ((x_name, x), (y_name, y)):
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"every {name} must be positive and finite (a power law lives on log axes); "
                             f"got {values.tolist()}.")
    if np.ptp(np.log(x)) == 0:
        raise ValueError(f"all {x_name} values are equal ({x[0]:g}): a slope needs at least two different ones.")
    return x, y


@dataclass(frozen=True)
class PowerLaw:
    """L(x) = (x_c / x) ** alpha, Kaplan's form: a straight line of slope -alpha on log-log axes."""

    x_c: float
    alpha: float

    def __call__(self, x):
        return (self.x_c / np.asarray(x, dtype=float)) ** self.alpha


def fit_power_law(x, y) -> PowerLaw:
    """Least-squares fit of log y = alpha * log x_c - alpha * log x: a straight line in log-log space."""
    x, y = _as_positive_points(x, y)
    slope, intercept = np.polyfit(np.log(x), np.log(y), deg=1)
    alpha = -slope
    if abs(alpha) < 1e-12:
        raise ValueError("y does not change with x (slope 0), so no x_c exists; check the data.")
    return PowerLaw(x_c=float(math.exp(intercept / alpha)), alpha=float(alpha))


@dataclass(frozen=True)
class SaturatingPowerLaw:
    """L(x) = E + A / x ** alpha: a power law that levels off at an irreducible loss E."""

    E: float
    A: float
    alpha: float

    def __call__(self, x):
        return self.E + self.A / np.asarray(x, dtype=float) ** self.alpha


def _fit_above_floor(log_x: np.ndarray, y: np.ndarray, floor: float) -> tuple[float, float, float]:
    """For a fixed floor E, fit log(y - E) = log A - alpha log x; return (A, alpha, squared error in log y)."""
    slope, intercept = np.polyfit(log_x, np.log(y - floor), deg=1)
    predicted = floor + np.exp(intercept + slope * log_x)
    return float(math.exp(intercept)), float(-slope), float(np.sum((np.log(predicted) - np.log(y)) ** 2))


def fit_saturating_power_law(x, y, grid_points: int = 400) -> SaturatingPowerLaw:
    """Fit L = E + A / x^alpha: for each floor E in [0, min y) the rest is a straight-line fit in log space,
    so a search over E alone (a grid, then golden-section refinement) finds the best of all three."""
    x, y = _as_positive_points(x, y)
    if len(x) < 3:
        raise ValueError(f"E + A / x^alpha has three parameters: it needs at least 3 points; got {len(x)}.")
    log_x, top = np.log(x), float(y.min()) * (1 - 1e-9)

    def error(floor: float) -> float:
        return _fit_above_floor(log_x, y, floor)[2]

    grid = np.linspace(0.0, top, grid_points)
    best = int(np.argmin([error(e) for e in grid]))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid_points - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):  # golden-section search: the bracket shrinks by 0.618 a step
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if error(a) < error(b):
            high = b
        else:
            low = a
    floor = float((low + high) / 2)
    amplitude, alpha, _ = _fit_above_floor(log_x, y, floor)
    return SaturatingPowerLaw(E=floor, A=amplitude, alpha=alpha)


def compute_frontier(compute, loss) -> np.ndarray:
    """Indices of the runs on the compute frontier, by increasing compute: each has a lower loss than every
    run that used no more compute. A law L(C) describes this envelope, the best loss a budget can buy."""
    compute, loss = _as_positive_points(compute, loss, "compute", "loss")
    frontier, best = [], math.inf
    for i in np.lexsort((loss, compute)):  # by compute, ties by loss
        if loss[i] < best:
            frontier.append(int(i))
            best = loss[i]
    return np.array(frontier)


def chinchilla_optimal(compute: float, tokens_per_parameter: float = CHINCHILLA_TOKENS_PER_PARAMETER
                       ) -> tuple[float, float]:
    """The compute-optimal (parameters N, tokens D) for a budget of `compute` FLOPs: C = 6ND with
    D = tokens_per_parameter * N, so N = sqrt(C / (6 * tokens_per_parameter))."""
    if compute <= 0 or tokens_per_parameter <= 0:
        raise ValueError(f"compute ({compute}) and tokens_per_parameter ({tokens_per_parameter}) must be positive.")
    parameters = math.sqrt(compute / (6 * tokens_per_parameter))
    return parameters, tokens_per_parameter * parameters
