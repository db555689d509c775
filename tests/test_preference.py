"""Chapter 13, DPO (`shared.preference`): log-probabilities, the loss against its formula, data, batches, training."""

import functools
import math

import pytest
import torch
from torch.utils.data import DataLoader

from shared.instruction import RESPONSE_HEADER, format_input
from shared.preference import (
    PreferenceDataset,
    compute_dpo_loss,
    compute_dpo_loss_batch,
    compute_dpo_loss_loader,
    compute_logprobs,
    evaluate_preferences,
    preference_collate_fn,
    response_kl,
    token_logprobs,
    train_model_dpo_simple,
    validate_preference_data,
)
from shared.tokenization import get_gpt2_tokenizer
from shared.transformer import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only waits

PAIRS = [
    {"instruction": "Name the novel this sentence comes from.", "input": "Emma smiled.", "chosen": "Emma",
     "rejected": "Persuasion"},
    {"instruction": "Give the first word of this sentence.", "input": "Darcy bowed to her.", "chosen": "Darcy",
     "rejected": "bowed"},
    {"instruction": "Repeat this sentence exactly.", "input": "It rained all day.", "chosen": "It rained all day.",
     "rejected": "It rained."},
]


@pytest.fixture(scope="module")
def tokenizer():
    return get_gpt2_tokenizer()


def tiny_gpt(seed: int = 0, vocab_size: int = 257, context_length: int = 256) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel({"vocab_size": vocab_size, "context_length": context_length, "emb_dim": 16, "n_heads": 2,
                     "n_layers": 1, "drop_rate": 0.0, "qkv_bias": False})


def test_token_logprobs_score_each_next_token():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    got = token_logprobs(logits, labels)
    for b in range(2):
        for i in range(4):
            assert got[b, i] == pytest.approx(float(torch.log_softmax(logits[b, i], -1)[labels[b, i + 1]]), abs=1e-6)


def test_compute_logprobs_averages_or_sums_the_selected_tokens_only():
    torch.manual_seed(1)
    logits, labels = torch.randn(2, 6, 9), torch.randint(0, 9, (2, 6))
    mask = torch.tensor([[False, False, True, True, True, False],  # an answer of 3 tokens, then padding
                         [False, True, True, False, False, False]])
    by_hand = []
    for b in range(2):
        picked = [float(torch.log_softmax(logits[b, i - 1], -1)[labels[b, i]]) for i in range(1, 6) if mask[b, i]]
        by_hand.append(picked)
    mean = compute_logprobs(logits, labels, mask)
    total = compute_logprobs(logits, labels, mask, reduction="sum")
    for b, picked in enumerate(by_hand):
        assert mean[b] == pytest.approx(sum(picked) / len(picked), abs=1e-6)
        assert total[b] == pytest.approx(sum(picked), abs=1e-6)
    # Whatever the padded positions' logits or labels, the result is the same.
    logits2, labels2 = logits.clone(), labels.clone()
    logits2[0, 5:] += 100.0
    labels2[1, 3:] = 0
    assert torch.allclose(compute_logprobs(logits2, labels2, mask), mean)
    assert torch.allclose(compute_logprobs(logits, labels), token_logprobs(logits, labels).mean(-1))


def test_compute_logprobs_refuses_bad_shapes_masks_and_reductions():
    logits, labels = torch.zeros(2, 4, 5), torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="logits of shape"):
        compute_logprobs(logits, labels[:, :3])
    with pytest.raises(ValueError, match="selection_mask has shape"):
        compute_logprobs(logits, labels, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="row 1 of selection_mask selects no token"):
        compute_logprobs(logits, labels, torch.tensor([[False, True, False, False], [True, False, False, False]]))
    with pytest.raises(ValueError, match="reduction='max'"):
        compute_logprobs(logits, labels, reduction="max")


def test_compute_dpo_loss_is_the_formula():
    torch.manual_seed(2)
    pc, pr, rc, rr = (torch.randn(5) for _ in range(4))
    beta = 0.3
    loss, chosen, rejected = compute_dpo_loss(pc, pr, rc, rr, beta)
    by_hand = [-math.log(1 / (1 + math.exp(-beta * ((pc[i] - rc[i]) - (pr[i] - rr[i]))))) for i in range(5)]
    assert float(loss) == pytest.approx(sum(by_hand) / 5, abs=1e-6)
    assert float(chosen) == pytest.approx(float((beta * (pc - rc)).mean()), abs=1e-6)
    assert float(rejected) == pytest.approx(float((beta * (pr - rr)).mean()), abs=1e-6)
    with pytest.raises(ValueError, match="beta=0"):
        compute_dpo_loss(pc, pr, rc, rr, beta=0)


def test_at_the_start_the_loss_is_log_2_and_each_answer_is_pushed_by_beta_over_2():
    """Policy = reference: every reward is 0, the loss log 2, and d loss / d logprob is -beta/2 (chosen),
    +beta/2 (rejected), divided by the number of pairs: DPO's first step raises one and lowers the other."""
    logprobs = torch.tensor([-1.5, -0.2, -3.0])
    chosen = logprobs.clone().requires_grad_()
    rejected = (logprobs - 1).requires_grad_()
    loss, chosen_reward, rejected_reward = compute_dpo_loss(chosen, rejected, logprobs, logprobs - 1, beta=0.1)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-7)
    assert float(chosen_reward) == float(rejected_reward) == 0.0
    assert torch.allclose(chosen.grad, torch.full((3,), -0.1 / 2 / 3))
    assert torch.allclose(rejected.grad, torch.full((3,), 0.1 / 2 / 3))


def test_the_dataset_is_prompt_then_answer_then_end_token(tokenizer):
    dataset = PreferenceDataset(PAIRS, tokenizer)
    item = dataset[2]
    prompt = tokenizer.encode(format_input(PAIRS[2]) + RESPONSE_HEADER)
    assert item["prompt"] == prompt
    assert item["chosen"] == prompt + tokenizer.encode("It rained all day.") + [tokenizer.eot_token]
    assert item["rejected"] == prompt + tokenizer.encode("It rained.") + [tokenizer.eot_token]
    assert len(dataset) == 3


@pytest.mark.parametrize(("data", "message"), [
    ([], "holds no preference pairs"),
    ("pairs", "holds no preference pairs"),
    ([PAIRS[0], ["a", "b"]], "pair 1 of the data is a list"),
    ([{**PAIRS[0], "rejected": None}], "pair 0 of the data lacks the string field"),
    ([{**PAIRS[1], "rejected": "Darcy "}], "pair 0 of the data has the same chosen and rejected answer"),
])
def test_bad_pairs_are_refused_naming_the_pair(data, message):
    with pytest.raises(ValueError, match=message):
        validate_preference_data(data)


def test_a_pair_longer_than_the_context_is_refused(tokenizer):
    long = {**PAIRS[2], "input": "It rained all day. " * 20, "chosen": "It rained all day. " * 20}
    with pytest.raises(ValueError, match=r"pair 1 .* more than max_length=64"):
        PreferenceDataset([PAIRS[0], long], tokenizer, max_length=64)


def test_the_collate_pads_both_answers_to_one_width_and_masks_all_but_the_answers(tokenizer):
    dataset = PreferenceDataset(PAIRS, tokenizer)
    batch = preference_collate_fn([dataset[0], dataset[2]], pad_token_id=tokenizer.eot_token)
    assert batch["chosen"].shape == batch["rejected"].shape == batch["chosen_mask"].shape
    assert batch["chosen"].shape[1] == max(len(dataset[i][k]) for i in (0, 2) for k in ("chosen", "rejected"))
    for row, pair in enumerate((PAIRS[0], PAIRS[2])):
        for key in ("chosen", "rejected"):
            selected = batch[key][row][batch[f"{key}_mask"][row]].tolist()
            assert tokenizer.decode(selected) == pair[key]  # the answer, without its end token
        sft = batch["chosen"][row][batch["chosen_sft_mask"][row]].tolist()
        assert tokenizer.decode(sft) == pair["chosen"] + "<|endoftext|>"
    with_end = preference_collate_fn([dataset[0]], pad_token_id=0, mask_end_token=False)
    assert with_end["rejected"][0][with_end["rejected_mask"][0]].tolist()[-1] == tokenizer.eot_token
    everything = preference_collate_fn([dataset[0]], pad_token_id=0, mask_prompt_tokens=False, mask_end_token=False)
    assert int(everything["rejected_mask"].sum()) == len(dataset[0]["rejected"])
    with pytest.raises(ValueError, match="the batch is empty"):
        preference_collate_fn([], pad_token_id=0)


def loaders(tokenizer, pairs=PAIRS, batch_size=3):
    collate = functools.partial(preference_collate_fn, pad_token_id=tokenizer.eot_token)
    dataset = PreferenceDataset(pairs, tokenizer, max_length=256)
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate)


def test_the_batch_loss_is_the_loss_of_the_two_models_logprobs(byte_tokenizer):
    policy, reference = tiny_gpt(0), tiny_gpt(1)
    batch = next(iter(loaders(byte_tokenizer)))
    loss, chosen, rejected = compute_dpo_loss_batch(batch, policy, reference, beta=0.2)

    def logprobs(model, key):
        return compute_logprobs(model(batch[key]), batch[key], batch[f"{key}_mask"])

    with torch.no_grad():
        expected = compute_dpo_loss(logprobs(policy, "chosen"), logprobs(policy, "rejected"),
                                    logprobs(reference, "chosen"), logprobs(reference, "rejected"), 0.2)
    for got, want in zip((loss, chosen, rejected), expected):
        assert float(got.detach()) == pytest.approx(float(want), abs=1e-5)
    # The likelihood term adds nll_weight times the chosen answers' (and end tokens') mean loss.
    with_nll, _, _ = compute_dpo_loss_batch(batch, policy, reference, beta=0.2, nll_weight=0.5)
    mask = batch["chosen_sft_mask"]
    with torch.no_grad():
        nll = -float((token_logprobs(policy(batch["chosen"]), batch["chosen"]) * mask[:, 1:]).sum() / mask[:, 1:].sum())
    assert float(with_nll) == pytest.approx(float(loss) + 0.5 * nll, abs=1e-5)
    with pytest.raises(ValueError, match="nll_weight=-1"):
        compute_dpo_loss_batch(batch, policy, reference, beta=0.2, nll_weight=-1)


def test_the_reference_itself_scores_log_2_no_margin_and_no_kl(byte_tokenizer):
    model = tiny_gpt(0)
    loader = loaders(byte_tokenizer, batch_size=2)
    metrics = evaluate_preferences(loader, model, model, beta=0.1)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["margin"] == metrics["accuracy"] == 0.0
    assert compute_dpo_loss_loader(loader, model, model, 0.1)[0] == pytest.approx(math.log(2), abs=1e-6)
    assert response_kl(model, model, loader) == pytest.approx(0.0, abs=1e-6)


def test_a_tiny_dpo_run_learns_its_preferences(byte_tokenizer, capsys):
    """Seeded: a few epochs on three pairs lower their DPO loss below log 2 and rank every chosen answer first."""
    policy, reference = tiny_gpt(0), tiny_gpt(0)
    loader = loaders(byte_tokenizer)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    torch.manual_seed(0)
    tracking = train_model_dpo_simple(policy, reference, loader, loader, optimizer, num_epochs=6, beta=0.5,
                                      eval_freq=2, eval_iter=1, start_context="Name the novel",
                                      tokenizer=byte_tokenizer)
    assert tracking["steps"] == [0, 2, 4]
    assert tracking["val_loss"][-1] < 0.5 * math.log(2)
    assert tracking["val_accuracy"][-1] == 1.0 and tracking["val_margin"][-1] > tracking["val_margin"][0] > 0
    assert not any(p.requires_grad for p in reference.parameters())  # the reference stayed frozen
    assert torch.equal(reference.tok_emb.weight, tiny_gpt(0).tok_emb.weight)
    assert response_kl(policy, reference, loader) > 0.01
    out = capsys.readouterr().out
    assert "Val reward margin" in out and "after epoch 6:" in out
    with pytest.raises(ValueError, match="eval_freq=0"):
        train_model_dpo_simple(policy, reference, loader, loader, optimizer, 1, 0.1, eval_freq=0, eval_iter=1)
