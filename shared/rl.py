"""Chapter 13: reinforcement learning with verifiable rewards, by group relative policy optimization (GRPO).

When a program can check an answer, the model can learn from its own attempts: sample a group of
answers to each prompt, score each with the checker, and push up the answers that scored above
their group's mean and down those below it. GRPO (Shao et al., 2024, DeepSeekMath; the method of
DeepSeek-R1) needs no value model: the group's mean and spread are the baseline. Its update is
PPO's clipped policy-ratio objective with a KL penalty that keeps the model near a frozen
reference. Any model that maps token ids to logits works (chapter 4's `GPTModel`, chapter 12's).

Beyond the book.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from shared.instruction import RESPONSE_HEADER, exact_match, format_input, generate_responses, score_responses
from shared.preference import token_logprobs
from shared.pretraining import generate_batch

RewardFn = Callable[[str, str], float]


def verifiable_reward(response: str, output: str) -> float:
    """1.0 if the response is the correct answer (chapter 7's exact match), else 0.0: a reward a program checks."""
    return exact_match(response, output)


# -- sampling groups ---------------------------------------------------------------------------------------------


@dataclass
class Rollouts:
    """A group of sampled answers for each of several prompts, scored, as tensors ready for the loss.

    `ids` (prompts * group, n) holds each prompt followed by one answer (and the end token if the answer
    stopped), right-padded; `mask` (same shape) is True on the answer tokens; `rewards` is
    (prompts, group); `responses` are the answers as text, in the order of the rows."""

    ids: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    responses: list[str]


def sample_groups(model, tokenizer, entries: Sequence[Mapping[str, str]], group_size: int,
                  max_new_tokens: int = 20, temperature: float = 1.0, top_k: int | None = None,
                  reward_fn: RewardFn = verifiable_reward) -> Rollouts:
    """Sample `group_size` answers to each entry's prompt (Alpaca format) from `model` and score them.

    Sampling is at `temperature` 1 by default, so the answers are drawn from the distribution that the
    policy ratio of `grpo_loss` refers to. Uses the global torch random state: seed it to repeat a draw.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size={group_size!r}: GRPO compares answers within a group, so sample at least 2 "
                         "per prompt (8 or 16 are usual).")
    if not entries:
        raise ValueError("no entries to sample answers for: give at least one entry with instruction, input, output.")
    context = model.cfg["context_length"]
    end = tokenizer.eot_token
    prompts = [tokenizer.encode(format_input(entry) + RESPONSE_HEADER) for entry in entries]
    for index, ids in enumerate(prompts):
        if len(ids) >= context:
            raise ValueError(f"entry {index}'s prompt is {len(ids)} tokens, which leaves no room for an answer in the "
                             f"model's context of {context} tokens: shorten its input.")
    repeated = [ids for ids in prompts for _ in range(group_size)]
    was_training = model.training
    model.eval()
    answers = generate_batch(model, repeated, max_new_tokens, context, temperature=temperature, top_k=top_k,
                             eos_id=end)
    model.train(was_training)

    rows, masks, responses, rewards = [], [], [], []
    for row, (prompt, answer) in enumerate(zip(repeated, answers)):
        limit = min(max_new_tokens, context - len(prompt))  # answer tokens (end token included) that fit
        stopped = len(answer) < max_new_tokens and len(answer) < limit  # it produced its end token, and that fits
        sequence = prompt + answer[:limit] + ([end] if stopped else [])
        rows.append(sequence)
        masks.append([False] * len(prompt) + [True] * (len(sequence) - len(prompt)))
        responses.append(tokenizer.decode(answer[:limit]).strip())
        rewards.append(reward_fn(responses[-1], entries[row // group_size]["output"]))
    width = max(len(row) for row in rows)
    device = next(model.parameters()).device
    ids = torch.tensor([row + [end] * (width - len(row)) for row in rows], device=device)
    mask = torch.tensor([m + [False] * (width - len(m)) for m in masks], device=device)
    return Rollouts(ids, mask, torch.tensor(rewards).view(len(entries), group_size), responses)


# -- the objective -------------------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """Each answer's advantage: its reward minus its group's mean, divided by the group's standard deviation.

    `rewards` is (prompts, group). A group whose answers all scored alike gets advantages of 0: it
    says nothing about which answer is better. `scale=False` leaves out the division (as Dr. GRPO
    does, which finds the division over-weights groups that are nearly all right or all wrong).
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)}: give (prompts, group) with a group of 2 or more.")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2,
              kl_coef: float = 0.04) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss on per-token log-probabilities (answers, tokens) and one advantage per answer.

    Per token: the policy ratio r = p / p_old, the clipped objective min(r A, clip(r, 1-eps, 1+eps) A)
    (PPO's), minus `kl_coef` times the KL estimate p_ref/p - log(p_ref/p) - 1 (always >= 0). Tokens
    outside `mask` do not count; each answer's tokens are averaged, then the answers. Returns the loss
    to minimise (minus the objective) and the mean KL and share of clipped tokens.
    """
    if not clip_eps > 0 or kl_coef < 0:
        raise ValueError(f"clip_eps={clip_eps!r}, kl_coef={kl_coef!r}: clip by a positive amount (0.2 is usual) and "
                         "weigh the KL by 0 or more (0.04 in DeepSeekMath).")
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    advantage = advantages.unsqueeze(-1)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    objective = torch.minimum(ratio * advantage, clipped * advantage)
    log_ref_ratio = ref_logprobs - logprobs
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    per_token = objective - kl_coef * kl
    per_answer = (per_token * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    tokens = mask.sum().clamp(min=1)
    stats = {"kl": float((kl.detach() * mask).sum() / tokens),
             "clip_fraction": float((((ratio - clipped).abs() > 0).to(mask.dtype) * mask).sum() / tokens)}
    return -per_answer.mean(), stats


def rollout_logprobs(model, rollouts: Rollouts) -> torch.Tensor:
    """Per-token log-probabilities (answers, n-1) of the rollouts' tokens under `model` (with gradients if enabled)."""
    return token_logprobs(model(rollouts.ids), rollouts.ids)


def grpo_step(policy_model, reference_model, optimizer, tokenizer, entries: Sequence[Mapping[str, str]],
              group_size: int = 8, max_new_tokens: int = 20, temperature: float = 1.0, clip_eps: float = 0.2,
              kl_coef: float = 0.04, updates_per_batch: int = 1, max_norm: float | None = 1.0,
              reward_fn: RewardFn = verifiable_reward) -> dict[str, float]:
    """One GRPO step: sample and score a group per entry, then `updates_per_batch` optimizer steps on them.

    The log-probabilities at sampling time are the "old" ones of the policy ratio; with one update the
    ratio is 1 and the clipping never acts, with more it keeps each update near the sampling policy.
    Returns the mean reward of the samples and the last update's loss, KL and clipped share.
    """
    if isinstance(updates_per_batch, bool) or not isinstance(updates_per_batch, int) or updates_per_batch < 1:
        raise ValueError(f"updates_per_batch={updates_per_batch!r}: take 1 or more optimizer steps per batch.")
    rollouts = sample_groups(policy_model, tokenizer, entries, group_size, max_new_tokens, temperature,
                             reward_fn=reward_fn)
    advantages = group_advantages(rollouts.rewards).reshape(-1).to(rollouts.ids.device)
    mask = rollouts.mask[:, 1:]
    with torch.no_grad():
        old_logprobs = rollout_logprobs(policy_model, rollouts)
        ref_logprobs = rollout_logprobs(reference_model, rollouts)
    policy_model.train()
    for _ in range(updates_per_batch):
        optimizer.zero_grad()
        loss, stats = grpo_loss(rollout_logprobs(policy_model, rollouts), old_logprobs, ref_logprobs, advantages,
                                mask, clip_eps, kl_coef)
        loss.backward()
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(policy_model.parameters(), max_norm)
        optimizer.step()
    return {"mean_reward": float(rollouts.rewards.mean()), "loss": float(loss.detach()), **stats}


def heldout_accuracy(model, tokenizer, entries: Sequence[Mapping[str, str]], max_new_tokens: int = 20) -> float:
    """The share of `entries` the model answers exactly right, greedily (chapter 7's exact match)."""
    return score_responses(entries, generate_responses(model, tokenizer, entries, max_new_tokens))["all"]


def train_model_grpo_simple(policy_model, reference_model, optimizer, tokenizer,
                            train_entries: Sequence[Mapping[str, str]], val_entries: Sequence[Mapping[str, str]],
                            num_steps: int, prompts_per_step: int = 8, group_size: int = 8, eval_freq: int = 10,
                            verbose: bool = True, **step_options) -> dict[str, list[float]]:
    """GRPO for `num_steps` steps, each on `prompts_per_step` training entries drawn at random (torch's RNG).

    Records each step's mean sample reward ("mean_reward") and, every `eval_freq` steps and at the end,
    the greedy exact-match accuracy on `val_entries` ("val_steps", "val_accuracy"). `step_options`
    go to `grpo_step` (temperature, clip_eps, kl_coef, ...).
    """
    if num_steps < 0 or eval_freq < 1 or not 1 <= prompts_per_step <= len(train_entries):
        raise ValueError(f"num_steps={num_steps}, eval_freq={eval_freq}, prompts_per_step={prompts_per_step} with "
                         f"{len(train_entries)} training entries: run 0 or more steps, evaluate every 1 or more, and "
                         "draw between 1 and all of the entries per step.")
    reference_model.eval()
    for parameter in reference_model.parameters():
        parameter.requires_grad_(False)
    tracking: dict[str, list[float]] = {"mean_reward": [], "kl": [], "val_steps": [], "val_accuracy": []}
    for step in range(num_steps + 1):
        if step % eval_freq == 0 or step == num_steps:
            accuracy = heldout_accuracy(policy_model, tokenizer, val_entries)
            tracking["val_steps"].append(step)
            tracking["val_accuracy"].append(accuracy)
            if verbose:
                recent = tracking["mean_reward"][-eval_freq:]
                reward = f"{sum(recent) / len(recent):.3f}" if recent else "  -  "
                print(f"Step {step:4d}: mean sample reward {reward}, held-out accuracy {accuracy:.1%}")
        if step == num_steps:
            break
        picks = torch.randperm(len(train_entries))[:prompts_per_step].tolist()
        stats = grpo_step(policy_model, reference_model, optimizer, tokenizer, [train_entries[i] for i in picks],
                          group_size, **step_options)
        tracking["mean_reward"].append(stats["mean_reward"])
        tracking["kl"].append(stats["kl"])
    return tracking
