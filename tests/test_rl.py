"""Chapter 13, GRPO (`shared.rl`): rewards, group advantages, the clipped objective by hand, sampling, a tiny run."""

import math

import pytest
import torch

from shared.instruction import RESPONSE_HEADER, format_input
from shared.rl import (
    Rollouts,
    group_advantages,
    grpo_loss,
    grpo_step,
    rollout_logprobs,
    sample_groups,
    train_model_grpo_simple,
    verifiable_reward,
)
from shared.transformer import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only waits

ENTRIES = [{"instruction": "Give the first word of this sentence.", "input": "It rained.", "output": "It"},
           {"instruction": "Name the novel this sentence comes from.", "input": "Emma smiled.", "output": "Emma"}]


def tiny_gpt(seed: int = 0, context_length: int = 256) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel({"vocab_size": 257, "context_length": context_length, "emb_dim": 16, "n_heads": 2,
                     "n_layers": 1, "drop_rate": 0.0, "qkv_bias": False})


def even_first_byte(response: str, output: str) -> float:
    """A reward a random tiny model earns half the time: the answer starts with a character of even code."""
    return float(bool(response) and ord(response[0]) % 2 == 0)


def test_the_verifiable_reward_is_chapter_7s_exact_match():
    assert verifiable_reward("Emma.", "Emma") == 1.0
    assert verifiable_reward(" pride and prejudice", "Pride and Prejudice") == 1.0
    assert verifiable_reward("Emma Woodhouse", "Emma") == 0.0


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    got = group_advantages(rewards, eps=0.0)
    std = math.sqrt(1 / 3)  # the sample standard deviation of 1, 0, 0, 1
    assert torch.allclose(got[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / std)
    assert torch.equal(group_advantages(rewards)[1], torch.zeros(4))  # all alike: nothing to learn from
    assert torch.allclose(got[2], torch.tensor([-0.25, -0.25, -0.25, 0.75]) / 0.5)
    assert torch.allclose(group_advantages(rewards, scale=False)[2], torch.tensor([-0.25, -0.25, -0.25, 0.75]))
    with pytest.raises(ValueError, match=r"rewards of shape \(4,\)"):
        group_advantages(rewards[0])
    with pytest.raises(ValueError, match=r"group of 2 or more"):
        group_advantages(rewards[:, :1])


def test_grpo_loss_by_hand():
    # Two answers of two tokens; the second answer's last token is padding (outside the mask).
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    old = torch.tensor([[-1.0, -2.5], [-0.2, 0.0]])
    ref = torch.tensor([[-1.2, -2.0], [-0.5, 0.0]])
    advantages = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[True, True], [True, False]])
    loss, stats = grpo_loss(logprobs, old, ref, advantages, mask, clip_eps=0.2, kl_coef=0.1)

    def kl(lp, rf):
        return math.exp(rf - lp) - (rf - lp) - 1

    # answer 0, token 0: ratio 1. Token 1: ratio e^0.5 = 1.65 > 1.2, A > 0: the clipped 1.2 counts.
    answer0 = ((1.0 - 0.1 * kl(-1.0, -1.2)) + (1.2 - 0.1 * kl(-2.0, -2.0))) / 2
    # answer 1, token 0: ratio e^-0.3 = 0.74 < 0.8 with A < 0: min(0.74 * -2, 0.8 * -2) = 0.8 * -2, the clipped
    # (pessimistic) value, whose gradient is 0: the update already lowered this answer enough.
    answer1 = 0.8 * -2.0 - 0.1 * kl(-0.5, -0.5)
    assert float(loss) == pytest.approx(-(answer0 + answer1) / 2, abs=1e-6)
    assert stats["clip_fraction"] == pytest.approx(2 / 3)  # token 1 of answer 0 and token 0 of answer 1 lie outside
    assert stats["kl"] == pytest.approx((kl(-1.0, -1.2) + 0 + 0) / 3, abs=1e-6)
    with pytest.raises(ValueError, match="clip_eps=0"):
        grpo_loss(logprobs, old, ref, advantages, mask, clip_eps=0)


def test_at_the_sampling_policy_the_loss_is_minus_the_mean_advantage_and_its_gradient_the_policy_gradient():
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, -1.5]], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss, stats = grpo_loss(logprobs, logprobs.detach(), logprobs.detach(), advantages, mask)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0) and stats["kl"] == 0.0 and stats["clip_fraction"] == 0.0
    # d loss / d logprob = -A / (tokens per answer) / (answers): raise the good answer, lower the bad one.
    assert torch.allclose(logprobs.grad, torch.tensor([[-0.25, -0.25], [0.25, 0.25]]))


def test_sample_groups_lays_out_prompts_answers_masks_and_rewards(byte_tokenizer):
    model = tiny_gpt()
    torch.manual_seed(5)
    rollouts = sample_groups(model, byte_tokenizer, ENTRIES, group_size=3, max_new_tokens=4, reward_fn=even_first_byte)
    assert isinstance(rollouts, Rollouts) and rollouts.rewards.shape == (2, 3) and len(rollouts.responses) == 6
    for row in range(6):
        entry = ENTRIES[row // 3]
        prompt = byte_tokenizer.encode(format_input(entry) + RESPONSE_HEADER)
        ids = rollouts.ids[row].tolist()
        assert ids[:len(prompt)] == prompt and not rollouts.mask[row, :len(prompt)].any()
        answer = [t for t, m in zip(ids, rollouts.mask[row].tolist()) if m]
        assert 1 <= len(answer) <= 5  # at most 4 tokens, plus the end token if the answer stopped
        stopped = answer[-1] == byte_tokenizer.eot_token
        assert byte_tokenizer.decode(answer[:-1] if stopped else answer).strip() == rollouts.responses[row]
        assert float(rollouts.rewards[row // 3, row % 3]) == even_first_byte(rollouts.responses[row], "")
    torch.manual_seed(5)
    again = sample_groups(model, byte_tokenizer, ENTRIES, group_size=3, max_new_tokens=4, reward_fn=even_first_byte)
    assert torch.equal(again.ids, rollouts.ids)  # the same seed draws the same answers


def test_sample_groups_refuses_a_group_of_one_no_entries_and_prompts_that_fill_the_context(byte_tokenizer):
    model = tiny_gpt()
    with pytest.raises(ValueError, match="group_size=1"):
        sample_groups(model, byte_tokenizer, ENTRIES, group_size=1)
    with pytest.raises(ValueError, match="no entries"):
        sample_groups(model, byte_tokenizer, [], group_size=2)
    with pytest.raises(ValueError, match="entry 0's prompt is .* no room for an answer"):
        sample_groups(tiny_gpt(context_length=64), byte_tokenizer, ENTRIES, group_size=2)


def test_answers_never_run_past_the_context(byte_tokenizer):
    prompt_length = len(byte_tokenizer.encode(format_input(ENTRIES[0]) + RESPONSE_HEADER))
    model = tiny_gpt(context_length=prompt_length + 2)
    rollouts = sample_groups(model, byte_tokenizer, ENTRIES[:1], group_size=4, max_new_tokens=10)
    assert rollouts.ids.shape[1] <= prompt_length + 2
    assert torch.isfinite(rollout_logprobs(model, rollouts)).all()


def test_grpo_steps_raise_the_reward_of_a_tiny_model(byte_tokenizer):
    """Seeded: with a reward the random model earns half the time, a few GRPO steps make it earn it nearly always."""
    policy, reference = tiny_gpt(1), tiny_gpt(1)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-2)
    torch.manual_seed(0)
    rewards = [grpo_step(policy, reference, optimizer, byte_tokenizer, ENTRIES, group_size=8, max_new_tokens=2,
                         kl_coef=0.0, updates_per_batch=2, reward_fn=even_first_byte)["mean_reward"]
               for _ in range(12)]
    assert sum(rewards[:3]) / 3 < 0.75 and sum(rewards[-3:]) / 3 > 0.9, rewards
    with pytest.raises(ValueError, match="updates_per_batch=0"):
        grpo_step(policy, reference, optimizer, byte_tokenizer, ENTRIES, updates_per_batch=0)


def test_the_training_loop_records_rewards_and_held_out_accuracy(byte_tokenizer, capsys):
    policy, reference = tiny_gpt(2), tiny_gpt(2)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    torch.manual_seed(0)
    tracking = train_model_grpo_simple(policy, reference, optimizer, byte_tokenizer, ENTRIES, ENTRIES[:1],
                                       num_steps=3, prompts_per_step=2, group_size=2, eval_freq=2, max_new_tokens=2)
    assert len(tracking["mean_reward"]) == len(tracking["kl"]) == 3
    assert tracking["val_steps"] == [0, 2, 3] and all(0.0 <= a <= 1.0 for a in tracking["val_accuracy"])
    assert not any(p.requires_grad for p in reference.parameters())
    assert "held-out accuracy" in capsys.readouterr().out
    with pytest.raises(ValueError, match="prompts_per_step=3 with 2 training entries"):
        train_model_grpo_simple(policy, reference, optimizer, byte_tokenizer, ENTRIES, ENTRIES, 1, prompts_per_step=3)
