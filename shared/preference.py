"""Chapter 13: preference tuning with direct preference optimization (DPO), from scratch.

DPO (Rafailov et al., 2023) tunes a model on pairs of answers to one prompt, a `chosen` one and a
`rejected` one, without a separate reward model: the loss raises the chosen answer's probability
relative to a frozen reference model (the model before tuning) and lowers the rejected one's, and
`beta` says how far from the reference the tuned model may move. The names are those of the book
repository's DPO notebook (`compute_logprobs`, `compute_dpo_loss`, `PreferenceDataset`,
`train_model_dpo_simple`), so readers recognise them. Any model that maps token ids (batch, tokens)
to logits (batch, tokens, vocab) works: chapter 4's `GPTModel` and chapter 12's models.

Beyond the book.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from shared.instruction import RESPONSE_HEADER, format_input
from shared.pretraining import generate_batch

PREFERENCE_FIELDS = ("instruction", "input", "chosen", "rejected")


# -- log-probabilities of answers -------------------------------------------------------------------------------


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(token t | tokens before t) for t = 1..n-1: the model's log-probability of each next token.

    `logits` (batch, n, vocab) come from running the model on `labels` (batch, n); the result is
    (batch, n-1), position i scoring token i+1, which the model predicted at position i."""
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(f"logits of shape {tuple(logits.shape)} and labels of shape {tuple(labels.shape)}: give "
                         "logits (batch, tokens, vocab) from running the model on labels (batch, tokens).")
    log_probs = F.log_softmax(logits[:, :-1, :].float(), dim=-1)
    return torch.gather(log_probs, -1, labels[:, 1:].unsqueeze(-1)).squeeze(-1)


def compute_logprobs(logits: torch.Tensor, labels: torch.Tensor, selection_mask: torch.Tensor | None = None,
                     reduction: str = "mean") -> torch.Tensor:
    """The log-probability of each sequence in `labels` under `logits`, one number per row.

    `selection_mask` (batch, n), True where a token belongs to the answer, picks the tokens that
    count (the answer and its end token, not the prompt or padding); the first column cannot be
    scored, nothing predicts it. As in the book repository, `reduction="mean"` averages over the
    selected tokens, so long and short answers weigh alike; "sum" is the DPO paper's whole-sequence
    log-probability.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r}: use 'mean' (per token, as the book) or 'sum' (per sequence).")
    per_token = token_logprobs(logits, labels)
    if selection_mask is None:
        return per_token.mean(dim=-1) if reduction == "mean" else per_token.sum(dim=-1)
    if selection_mask.shape != labels.shape:
        raise ValueError(f"selection_mask has shape {tuple(selection_mask.shape)}, labels {tuple(labels.shape)}: "
                         "give one mask value per label token.")
    mask = selection_mask[:, 1:].to(per_token.dtype)
    counts = mask.sum(dim=-1)
    if bool((counts == 0).any()):
        raise ValueError(f"row {int((counts == 0).nonzero()[0])} of selection_mask selects no token after the "
                         "first: every sequence needs at least one scored answer token.")
    total = (per_token * mask).sum(dim=-1)
    return total / counts if reduction == "mean" else total


# -- the loss ---------------------------------------------------------------------------------------------------


def compute_dpo_loss(model_chosen_logprobs: torch.Tensor, model_rejected_logprobs: torch.Tensor,
                     reference_chosen_logprobs: torch.Tensor, reference_rejected_logprobs: torch.Tensor,
                     beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of a batch of pairs, and the mean implicit rewards of the chosen and rejected answers.

    Each answer's implicit reward is `beta` times how much more likely the tuned model finds it than
    the reference does (a log-ratio); the loss is -log sigmoid(chosen reward - rejected reward),
    averaged over the pairs. It is log 2 when the model is the reference, and falls as the model
    prefers the chosen answers more than the reference did.
    """
    if not beta > 0:
        raise ValueError(f"beta={beta!r}: DPO needs beta > 0 (0.1 is usual; smaller lets the model move further "
                         "from the reference).")
    chosen_rewards = beta * (model_chosen_logprobs - reference_chosen_logprobs)
    rejected_rewards = beta * (model_rejected_logprobs - reference_rejected_logprobs)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses.mean(), chosen_rewards.detach().mean(), rejected_rewards.detach().mean()


# -- the data ---------------------------------------------------------------------------------------------------


def validate_preference_data(data, source: str = "the data") -> list[dict]:
    """Return `data` if it is a non-empty list of pairs with string fields instruction, input, chosen, rejected
    and a chosen answer that differs from the rejected one; otherwise a ValueError naming the first bad pair."""
    if not isinstance(data, list) or not data:
        raise ValueError(f"{source} holds no preference pairs: give a non-empty list of dicts with the fields "
                         f"{', '.join(PREFERENCE_FIELDS)}.")
    for index, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise ValueError(f"pair {index} of {source} is a {type(entry).__name__}, not a dict with the fields "
                             f"{', '.join(PREFERENCE_FIELDS)}.")
        missing = [f for f in PREFERENCE_FIELDS if not isinstance(entry.get(f), str)]
        if missing:
            raise ValueError(f"pair {index} of {source} lacks the string field(s) {', '.join(missing)}; every pair "
                             f"needs {', '.join(PREFERENCE_FIELDS)} ('input' may be empty).")
        if entry["chosen"].strip() == entry["rejected"].strip():
            raise ValueError(f"pair {index} of {source} has the same chosen and rejected answer "
                             f"({entry['chosen']!r}): a pair must prefer one answer over a different one.")
    return data


class PreferenceDataset(Dataset):
    """Preference pairs, each formatted and tokenized once: the prompt, and prompt + answer + end token twice.

    An item is a dict of token-id lists: "prompt" (the Alpaca prompt and response header, as chapter
    7 formats it), "chosen" and "rejected" (the prompt followed by that answer and `<|endoftext|>`, so
    the model is also judged on stopping). With `max_length` (the model's context) a pair that does
    not fit is refused, naming it.
    """

    def __init__(self, data: Sequence[Mapping[str, str]], tokenizer, max_length: int | None = None):
        self.data = validate_preference_data(list(data))
        end = tokenizer.encode("<|endoftext|>", allowed_special={"<|endoftext|>"})
        self.encoded = []
        for index, entry in enumerate(self.data):
            prompt = tokenizer.encode(format_input(entry) + RESPONSE_HEADER)
            item = {"prompt": prompt,
                    "chosen": prompt + tokenizer.encode(entry["chosen"]) + end,
                    "rejected": prompt + tokenizer.encode(entry["rejected"]) + end}
            longest = max(len(item["chosen"]), len(item["rejected"]))
            if max_length is not None and longest > max_length:
                raise ValueError(f"pair {index} ({entry['instruction'][:40]!r}...) is {longest} tokens long with its "
                                 f"answer, more than max_length={max_length} (the model's context): shorten its "
                                 "input or answers, or leave the pair out.")
            self.encoded.append(item)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.encoded[index]

    def __len__(self) -> int:
        return len(self.encoded)


def preference_collate_fn(batch: Sequence[Mapping[str, list[int]]], pad_token_id: int, device="cpu",
                          mask_prompt_tokens: bool = True, mask_end_token: bool = True) -> dict[str, torch.Tensor]:
    """Pad a batch of `PreferenceDataset` items into tensors: "chosen" and "rejected" (batch, n), both n wide,
    and the masks "chosen_mask", "rejected_mask", True on the tokens the DPO loss scores: the answer's.

    The prompt and the padding never count; `mask_prompt_tokens=False` scores the prompt too. The end
    token after each answer is not scored by default, as in the book (whose data has none) and in
    Llama 3's recipe, which found that scoring it in both answers unlearns stopping; `mask_end_token=False`
    scores it. "chosen_sft_mask" marks the chosen answer and its end token: what chapter 7's finetuning
    learns, for `compute_dpo_loss_batch`'s optional likelihood term. (The book repository calls its
    version `custom_collate_fn`; this one pads both answers to one width, so they go through the model
    as one batch.)
    """
    if len(batch) == 0:
        raise ValueError("the batch is empty: give preference_collate_fn at least one PreferenceDataset item.")
    width = max(len(item[key]) for item in batch for key in ("chosen", "rejected"))
    out: dict[str, torch.Tensor] = {}
    for key in ("chosen", "rejected"):
        rows, masks, sft_masks = [], [], []
        for item in batch:
            ids, prompt_length = item[key], len(item["prompt"])
            rows.append(ids + [pad_token_id] * (width - len(ids)))
            start = prompt_length if mask_prompt_tokens else 0
            stop = len(ids) - 1 if mask_end_token else len(ids)
            masks.append([start <= i < stop for i in range(width)])
            sft_masks.append([prompt_length <= i < len(ids) for i in range(width)])
        out[key] = torch.tensor(rows, device=device)
        out[f"{key}_mask"] = torch.tensor(masks, device=device)
        if key == "chosen":
            out["chosen_sft_mask"] = torch.tensor(sft_masks, device=device)
    return out


# -- the loss of batches and loaders -------------------------------------------------------------------------


def answer_logprobs(model, batch: Mapping[str, torch.Tensor],
                    reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """`compute_logprobs` of the chosen and of the rejected answers in a collated batch, in one forward pass."""
    both = torch.cat([batch["chosen"], batch["rejected"]])
    mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
    logprobs = compute_logprobs(model(both), both, mask, reduction)
    return logprobs[:len(batch["chosen"])], logprobs[len(batch["chosen"]):]


def compute_dpo_loss_batch(batch: Mapping[str, torch.Tensor], policy_model, reference_model, beta: float,
                           nll_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`compute_dpo_loss` of one collated batch: the policy's log-probabilities (with gradients) against
    the reference model's (without).

    `nll_weight` > 0 adds that times chapter 7's loss on the chosen answers (their mean negative
    log-likelihood per token, end token included), as Llama 3's recipe does (with 0.2): it keeps the
    chosen answers likely while DPO pushes the pair apart.
    """
    if nll_weight < 0:
        raise ValueError(f"nll_weight={nll_weight!r}: weigh the chosen answers' likelihood by 0 (plain DPO) or more.")
    n = len(batch["chosen"])
    both = torch.cat([batch["chosen"], batch["rejected"]])
    per_token = token_logprobs(policy_model(both), both)
    mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])[:, 1:].to(per_token.dtype)
    logprobs = (per_token * mask).sum(-1) / mask.sum(-1)
    with torch.no_grad():
        reference_chosen, reference_rejected = answer_logprobs(reference_model, batch)
    loss, chosen_rewards, rejected_rewards = compute_dpo_loss(logprobs[:n], logprobs[n:], reference_chosen,
                                                              reference_rejected, beta)
    if nll_weight > 0:
        sft_mask = batch["chosen_sft_mask"][:, 1:].to(per_token.dtype)
        loss = loss - nll_weight * (per_token[:n] * sft_mask).sum() / sft_mask.sum()
    return loss, chosen_rewards, rejected_rewards


def compute_dpo_loss_loader(data_loader, policy_model, reference_model, beta: float,
                            num_batches: int | None = None) -> tuple[float, float, float]:
    """The mean DPO loss, chosen reward and rejected reward over the first `num_batches` batches (all by default)."""
    metrics = evaluate_preferences(data_loader, policy_model, reference_model, beta, num_batches)
    return metrics["loss"], metrics["chosen_reward"], metrics["rejected_reward"]


def evaluate_preferences(data_loader, policy_model, reference_model, beta: float,
                         num_batches: int | None = None) -> dict[str, float]:
    """DPO loss, mean chosen and rejected rewards, their margin, the preference accuracy (the share of pairs
    whose chosen answer gets the higher reward) and the policy's mean log-probabilities of the chosen and
    rejected answers ("chosen_logprob", "rejected_logprob") over `num_batches` batches, without gradients."""
    if len(data_loader) == 0:
        raise ValueError("the data loader is empty: it needs at least one batch of preference pairs.")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    totals = {"loss": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0, "accuracy": 0.0, "chosen_logprob": 0.0,
              "rejected_logprob": 0.0}
    pairs = 0
    with torch.no_grad():
        for i, batch in enumerate(data_loader):
            if i >= num_batches:
                break
            policy_chosen, policy_rejected = answer_logprobs(policy_model, batch)
            reference_chosen, reference_rejected = answer_logprobs(reference_model, batch)
            chosen = beta * (policy_chosen - reference_chosen)
            rejected = beta * (policy_rejected - reference_rejected)
            n = len(chosen)
            totals["loss"] += float(-F.logsigmoid(chosen - rejected).sum())
            totals["chosen_reward"] += float(chosen.sum())
            totals["rejected_reward"] += float(rejected.sum())
            totals["accuracy"] += float((chosen > rejected).float().sum())
            totals["chosen_logprob"] += float(policy_chosen.sum())
            totals["rejected_logprob"] += float(policy_rejected.sum())
            pairs += n
    metrics = {name: total / pairs for name, total in totals.items()}
    metrics["margin"] = metrics["chosen_reward"] - metrics["rejected_reward"]
    return metrics


def evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, beta: float,
                             eval_iter: int) -> dict[str, float]:
    """`evaluate_preferences` on `eval_iter` batches of the training and of the validation data, in eval mode,
    as "train_loss", "val_accuracy", and so on."""
    policy_model.eval()
    metrics = {}
    for split, loader in (("train", train_loader), ("val", val_loader)):
        for name, value in evaluate_preferences(loader, policy_model, reference_model, beta, eval_iter).items():
            metrics[f"{split}_{name}"] = value
    policy_model.train()
    return metrics


def train_model_dpo_simple(policy_model, reference_model, train_loader, val_loader, optimizer, num_epochs: int,
                           beta: float, eval_freq: int, eval_iter: int, start_context: str | None = None,
                           tokenizer=None, nll_weight: float = 0.0, verbose: bool = True) -> dict[str, list[float]]:
    """The book's training loop with the DPO loss: one optimizer step per batch of pairs, the reference frozen.

    Every `eval_freq` steps it records the loss, rewards, margin and preference accuracy on `eval_iter`
    batches of both loaders (the lists of the returned dict, e.g. "val_margin", with "steps" and
    "tokens_seen"), and prints a line; after each epoch, with `start_context` and `tokenizer`, it
    prints the model's greedy answer to that prompt. `nll_weight` goes to `compute_dpo_loss_batch`.
    """
    if eval_freq < 1 or eval_iter < 1 or num_epochs < 0:
        raise ValueError(f"eval_freq={eval_freq}, eval_iter={eval_iter}, num_epochs={num_epochs}: evaluate every "
                         "1 or more steps on 1 or more batches, for 0 or more epochs.")
    reference_model.eval()
    for parameter in reference_model.parameters():
        parameter.requires_grad_(False)
    tracking: dict[str, list[float]] = {"steps": [], "tokens_seen": []}
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        policy_model.train()
        for batch in train_loader:
            optimizer.zero_grad()
            loss, _, _ = compute_dpo_loss_batch(batch, policy_model, reference_model, beta, nll_weight)
            loss.backward()
            optimizer.step()
            tokens_seen += batch["chosen"].numel() + batch["rejected"].numel()
            global_step += 1
            if global_step % eval_freq == 0:
                metrics = evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, beta,
                                                   eval_iter)
                tracking["steps"].append(global_step)
                tracking["tokens_seen"].append(tokens_seen)
                for name, value in metrics.items():
                    tracking.setdefault(name, []).append(value)
                if verbose:
                    print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {metrics['train_loss']:.3f}, "
                          f"Val loss {metrics['val_loss']:.3f}, Train reward margin {metrics['train_margin']:.3f}, "
                          f"Val reward margin {metrics['val_margin']:.3f}, Val accuracy {metrics['val_accuracy']:.1%}")
        if verbose and start_context is not None and tokenizer is not None:
            print(f"  after epoch {epoch + 1}: {_greedy_answer(policy_model, tokenizer, start_context)!r}")
    return tracking


def _greedy_answer(model, tokenizer, prompt: str, max_new_tokens: int = 20) -> str:
    """The model's greedy continuation of `prompt`, up to the end token."""
    model.eval()
    ids = generate_batch(model, [tokenizer.encode(prompt)], max_new_tokens, model.cfg["context_length"],
                         eos_id=tokenizer.eot_token)[0]
    model.train()
    return tokenizer.decode(ids).strip()


def response_kl(policy_model, reference_model, data_loader, num_batches: int | None = None) -> float:
    """The mean per-token KL divergence KL(policy || reference) over the chosen answers' tokens (nats).

    How far tuning moved the model's next-token distributions where it answers: 0 for the reference
    itself. (DPO's `beta` trades this against fitting the preferences.)"""
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total, count = 0.0, 0
    with torch.no_grad():
        for i, batch in enumerate(data_loader):
            if i >= num_batches:
                break
            ids, mask = batch["chosen"], batch["chosen_mask"][:, 1:]
            policy = F.log_softmax(policy_model(ids)[:, :-1].float(), dim=-1)
            reference = F.log_softmax(reference_model(ids)[:, :-1].float(), dim=-1)
            kl = (policy.exp() * (policy - reference)).sum(dim=-1)
            total += float((kl * mask).sum())
            count += int(mask.sum())
    return total / count
