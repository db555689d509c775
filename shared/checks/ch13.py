"""Checks for chapter 13's exercises: the IPO loss, the pass@k estimate, a reward with partial credit."""

from __future__ import annotations

import math

import torch

from shared.checks.common import correct, not_attempted


def check_exercise_13_1(compute_ipo_loss) -> None:
    """Exercise 13.1: IPO's loss, the mean of (h - 1/(2 beta))**2, h the log-ratio margin over the reference's."""
    if not_attempted("13.1", compute_ipo_loss):
        return
    generator = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=generator) for _ in range(4))
    beta = 0.25
    h = (pc - rc) - (pr - rr)
    expected = ((h - 1 / (2 * beta)) ** 2).mean()
    result = compute_ipo_loss(pc, pr, rc, rr, beta=beta)
    assert isinstance(result, torch.Tensor) and result.dim() == 0, (
        f"compute_ipo_loss should return one number (a 0-dimensional tensor), not {result!r}"
    )
    hints = {
        "the margin is scaled by beta: IPO compares the plain log-ratio margin h with 1/(2 beta)":
            ((beta * h - 1 / (2 * beta)) ** 2).mean(),
        "square the difference: IPO is a squared loss, (h - 1/(2 beta))**2": (h - 1 / (2 * beta)).abs().mean(),
        "the target is 1/(2 beta), not 1/beta": ((h - 1 / beta) ** 2).mean(),
        "subtract the reference's log-ratios: h = (chosen - ref chosen) - (rejected - ref rejected)":
            (((pc - pr) - 1 / (2 * beta)) ** 2).mean(),
    }
    for hint, wrong in hints.items():
        assert not torch.allclose(result, wrong, atol=1e-5), hint
    assert torch.allclose(result, expected, atol=1e-5), (
        f"got {float(result):.4f}, expected {float(expected):.4f}: the mean over the pairs of "
        "(h - 1/(2*beta))**2, h = (model_chosen - reference_chosen) - (model_rejected - reference_rejected)"
    )
    correct("13.1", "Unlike DPO's, IPO's loss stops pulling once the margin reaches 1/(2 beta): it cannot push "
                    "the log-ratios apart without bound.")


def check_exercise_13_2(pass_at_k) -> None:
    """Exercise 13.2: the unbiased pass@k estimate from n samples of which c are right, 1 - C(n-c, k) / C(n, k)."""
    if not_attempted("13.2", pass_at_k):
        return
    cases = [(8, 0, 1), (8, 0, 8), (8, 1, 1), (8, 1, 8), (8, 2, 4), (16, 3, 5), (10, 9, 2), (5, 5, 3), (20, 4, 1)]
    for n, c, k in cases:
        expected = 1.0 - (math.comb(n - c, k) / math.comb(n, k))
        result = pass_at_k(n, c, k)
        assert isinstance(result, (int, float)) and not isinstance(result, bool), (
            f"pass_at_k({n}, {c}, {k}) returned {result!r}: return a float"
        )
        naive = 1 - (1 - c / n) ** k
        if not math.isclose(naive, expected, abs_tol=1e-9):
            assert not math.isclose(result, naive, abs_tol=1e-9), (
                "1 - (1 - c/n)**k assumes samples drawn with replacement; with n samples drawn once, count the "
                "ways to pick k wrong ones: 1 - C(n-c, k) / C(n, k)"
            )
        assert math.isclose(result, expected, abs_tol=1e-9), (
            f"pass_at_k({n}, {c}, {k}) = {result}, expected {expected:.6f} (1 - C(n-c, k) / C(n, k); 1.0 when "
            "fewer than k answers are wrong)"
        )
    correct("13.2", "pass@1 is the share of right samples; pass@k for large k is the share of prompts that "
                    "reinforcement learning can learn from at all.")


def check_exercise_13_3(partial_credit_reward) -> None:
    """Exercise 13.3: a reward in [0, 1]: 1 for the exact answer, partial credit for overlapping words, 0 for none."""
    if not_attempted("13.3", partial_credit_reward):
        return
    sentence = "She hardly knew what to say."
    full = partial_credit_reward(sentence, sentence)
    assert full == 1.0, f"the exact answer should earn 1.0, not {full!r}"
    assert partial_credit_reward("she hardly knew what to say", sentence) == 1.0, (
        "compare answers as chapter 7 scores them (normalize_answer: case and final punctuation do not count)"
    )
    none = partial_credit_reward("Emma laughed.", sentence)
    assert none == 0.0, f"an answer sharing no word with the output should earn 0.0, not {none!r}"
    partials = [partial_credit_reward(answer, sentence) for answer in
                ("She knew what to say.", "She hardly knew.", "She hardly knew what to say, and smiled.")]
    assert all(isinstance(p, float) and 0.0 < p < 1.0 for p in partials), (
        f"answers with some of the right words should earn between 0 and 1, got {partials}"
    )
    assert partials[0] > partials[1], (
        "an answer missing one word should earn more than one missing three: credit the share of words shared"
    )
    assert partial_credit_reward("She hardly knew what to say say say.", sentence) < 1.0, (
        "repeating right words should not earn full credit: count each word as often as it occurs (word F1 does)"
    )
    correct("13.3", "Partial credit gives groups whose answers are all wrong a spread of rewards, so they carry "
                    "a learning signal; exact match gives them none.")
