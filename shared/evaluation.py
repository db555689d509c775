"""Scoring a language model: loss and perplexity over a data loader or a whole text, and bits per byte.

Perplexity is `exp` of the mean loss per predicted token. "Per token" matters: the book's
`calc_loss_loader` averages the per-batch means, which gives a short last batch as much weight as a
full one. Here every predicted token counts once, so the result equals `exp` of the loss that
`transformers` reports for the same weights and tokens.

Perplexity depends on the tokenizer (a model with bigger tokens predicts fewer, harder ones), so
models with different tokenizers are compared in bits per byte instead: the same total loss spread
over the bytes of the text, in bits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # a target with this id is not scored (PyTorch's cross_entropy default; chapter 7 uses it)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put `model` in eval mode (no dropout) for the `with` block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def summed_nll(model: torch.nn.Module, input_batch: torch.Tensor, target_batch: torch.Tensor) -> tuple[float, int]:
    """The negative log-likelihood of a batch's targets, summed (nats), and how many targets were scored.

    A sum, not a mean, so that batches of different sizes can be added up exactly.
    """
    logits = model(input_batch)  # (batch, num_tokens, vocab_size)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), target_batch.flatten(), reduction="sum",
                          ignore_index=IGNORE_INDEX)
    return nll.item(), int((target_batch != IGNORE_INDEX).sum())


def loss_over_loader(model: torch.nn.Module, data_loader, device, num_batches: int | None = None) -> tuple[float, int]:
    """The summed loss (nats) over the first `num_batches` batches (all by default) and the number of
    tokens it covers. Every token weighs the same, however the tokens are split into batches.

    Runs in eval mode without gradients and leaves the model in the mode it was in. Targets equal to
    `IGNORE_INDEX` (-100) are not counted.
    """
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be at least 1 (or None for all batches), got {num_batches}.")
    total_nll, total_tokens, batches = 0.0, 0, 0
    with eval_mode(model), torch.no_grad():
        for input_batch, target_batch in data_loader:
            if num_batches is not None and batches >= num_batches:
                break
            nll, count = summed_nll(model, input_batch.to(device), target_batch.to(device))
            total_nll, total_tokens, batches = total_nll + nll, total_tokens + count, batches + 1
    if batches == 0:
        raise ValueError("the data loader has no batches: its text is shorter than one batch of windows. "
                         "Use more text, a smaller batch_size or max_length, or drop_last=False.")
    if total_tokens == 0:
        raise ValueError(f"every target in the data loader is {IGNORE_INDEX} (ignored), so there is nothing to score.")
    return total_nll, total_tokens


def perplexity(model: torch.nn.Module, data_loader, device, num_batches: int | None = None) -> float:
    """`exp` of the mean loss per token over a data loader (see `loss_over_loader`)."""
    nll, tokens = loss_over_loader(model, data_loader, device, num_batches)
    return math.exp(nll / tokens)


def bits_per_byte(nll_nats: float, num_bytes: int) -> float:
    """A total loss in nats as bits per byte of text: nats / bytes / ln 2.

    (Loss per token) x tokens = the total loss, whatever the tokenizer, so bits per byte compares
    models with different tokenizers on the same text.
    """
    if num_bytes < 1:
        raise ValueError(f"num_bytes must be positive, got {num_bytes}: score a non-empty text.")
    if nll_nats < 0:
        raise ValueError(f"nll_nats is {nll_nats}, but a negative log-likelihood cannot be negative: "
                         "pass the summed loss (a log-likelihood has the opposite sign).")
    return nll_nats / num_bytes / math.log(2)


# ---------------------------------------------------------------------------------------------
# A whole text, longer than the context: windows that score every token once
# ---------------------------------------------------------------------------------------------


class Window(NamedTuple):
    """One forward pass over a long text: the model reads `token_ids[start:end]`, predicting
    `token_ids[start + 1 : end + 1]`, and only the last `scored` predictions count (the tokens before
    them were scored by an earlier window and are here only as context)."""

    start: int
    end: int
    scored: int


def text_windows(num_tokens: int, context_length: int, stride: int | None = None) -> list[Window]:
    """The windows that score tokens 1 .. num_tokens - 1 of a text exactly once (token 0 has nothing
    before it to be predicted from).

    With `stride=None` (or `stride == context_length`) the windows do not overlap: the cheap, usual way,
    in which the first token of each window is predicted with no context at all. With a smaller
    stride each window moves on by `stride` tokens and keeps the `context_length - stride` before
    them as context: more context per prediction, about context_length / stride times the compute.
    The first window scores everything it reads, since no earlier tokens exist to add as context.
    """
    if context_length < 1:
        raise ValueError(f"context_length must be at least 1, got {context_length}.")
    stride = context_length if stride is None else stride
    if not 1 <= stride <= context_length:
        raise ValueError(f"stride must be between 1 and context_length={context_length}, got {stride}: a stride "
                         "larger than the context would skip tokens. Use stride=None for non-overlapping windows.")
    if num_tokens < 2:
        raise ValueError(f"the text has {num_tokens} token(s), but scoring needs at least 2: the first token has "
                         "nothing before it, so only the tokens after it are predicted. Use a longer text.")
    last = num_tokens - 1  # the last input position that predicts something (it predicts the final token)
    end = min(context_length, last)
    windows = [Window(0, end, end)]
    while end < last:
        new_end = min(end + stride, last)
        windows.append(Window(end - (context_length - stride), new_end, new_end - end))
        end = new_end
    return windows


def _model_context_length(model: torch.nn.Module, context_length: int | None) -> int:
    """`context_length`, or the model's own (GPTModel keeps it in `model.cfg`), checked against the model's."""
    model_context = getattr(model, "cfg", {}).get("context_length")
    if context_length is None:
        if model_context is None:
            raise ValueError("this model has no cfg['context_length']: pass context_length= explicitly.")
        return model_context
    if model_context is not None and context_length > model_context:
        raise ValueError(f"context_length={context_length} is longer than the model's context_length="
                         f"{model_context}. Use at most {model_context}, or None for the model's own.")
    return context_length


def loss_over_token_ids(model: torch.nn.Module, token_ids: Sequence[int] | torch.Tensor, device,
                        context_length: int | None = None, stride: int | None = None,
                        batch_size: int = 4) -> tuple[float, int]:
    """The summed loss (nats) of a token sequence of any length, and the number of tokens predicted
    (`len(token_ids) - 1`): every token after the first is scored exactly once (see `text_windows`).

    `context_length` defaults to the model's. Windows of equal length run `batch_size` at a time; the
    logits of one batch take batch_size x context_length x vocab_size floats (800 MB for GPT-2 at 4).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    context_length = _model_context_length(model, context_length)
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    windows = text_windows(len(ids), context_length, stride)

    total_nll, total_tokens = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for group in _batches_of_equal_length(windows, batch_size):
            inputs = torch.stack([ids[w.start : w.end] for w in group])
            targets = torch.stack([ids[w.start + 1 : w.end + 1] for w in group])
            for row, window in enumerate(group):  # context only: predicted by an earlier window
                targets[row, : window.end - window.start - window.scored] = IGNORE_INDEX
            nll, count = summed_nll(model, inputs.to(device), targets.to(device))
            total_nll, total_tokens = total_nll + nll, total_tokens + count
    return total_nll, total_tokens


def _batches_of_equal_length(windows: list[Window], batch_size: int) -> Iterator[list[Window]]:
    """Consecutive windows grouped into batches of at most `batch_size` windows of one length."""
    group: list[Window] = []
    for window in windows:
        if group and (len(group) == batch_size or window.end - window.start != group[0].end - group[0].start):
            yield group
            group = []
        group.append(window)
    yield group


@dataclass(frozen=True)
class TextScore:
    """How well a model predicts a text: its summed loss, the tokens predicted and the text's bytes."""

    nll_nats: float  # the negative log-likelihood of the predicted tokens, summed, in nats
    num_tokens: int  # tokens predicted: all but the first
    num_bytes: int  # UTF-8 bytes of the whole text

    @property
    def loss(self) -> float:
        """Mean loss per predicted token, in nats (the cross-entropy loss of training)."""
        return self.nll_nats / self.num_tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def bits_per_byte(self) -> float:
        return bits_per_byte(self.nll_nats, self.num_bytes)


def evaluate_text(model: torch.nn.Module, text: str, tokenizer, device, context_length: int | None = None,
                  stride: int | None = None, batch_size: int = 4) -> TextScore:
    """Score `text`: tokenize it (`<|endoftext|>` counts as the special token) and predict every token
    after the first, in windows of `context_length` tokens (the model's by default; see `text_windows`
    for `stride`).

    Bytes are all the UTF-8 bytes of the text, the first token's included although nothing predicts
    it, so bits per byte is slightly favourable on a short text and exact in the limit of a long one.
    """
    if not text:
        raise ValueError("the text is empty: there is nothing to score.")
    token_ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    nll, tokens = loss_over_token_ids(model, token_ids, device, context_length, stride, batch_size)
    return TextScore(nll, tokens, len(text.encode("utf-8")))


# ---------------------------------------------------------------------------------------------
# Log-likelihood scoring: how likely is a continuation after a context? (multiple-choice benchmarks)
# ---------------------------------------------------------------------------------------------


def _continuation_rows(requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                       context_length: int) -> list[tuple[list[int], list[int]]]:
    """Each (context, continuation) pair as (the model's input, the continuation's ids), the input being
    context + continuation without its last token, cut from the left to the last `context_length` tokens."""
    rows = []
    for number, (context, continuation) in enumerate(requests):
        context, continuation = list(context), list(continuation)
        if not context:
            raise ValueError(f"request {number} has an empty context, so nothing predicts the continuation's first "
                             "token. Start the context with a token (e.g. <|endoftext|>).")
        if not continuation:
            raise ValueError(f"request {number} has an empty continuation: there is nothing to score.")
        if len(continuation) > context_length:
            raise ValueError(f"request {number}'s continuation has {len(continuation)} tokens, more than the model's "
                             f"window of {context_length}: it cannot be scored in one pass. Shorten it.")
        full = context + continuation
        rows.append((full[:-1][-context_length:], continuation))
    return rows


def continuation_logprobs(model: torch.nn.Module, requests: Sequence[tuple[Sequence[int], Sequence[int]]], device,
                          context_length: int | None = None, batch_size: int = 32) -> list[float]:
    """For each (context ids, continuation ids) pair, the summed log-probability (nats) of the
    continuation's tokens given the context: log p(c_1 | context) + log p(c_2 | context, c_1) + ...

    Only the continuation's tokens are scored. A pair longer than the model's window keeps its last
    `context_length + 1` tokens: the context is cut from the left (its oldest tokens go), never the
    continuation. Pairs run `batch_size` at a time, longest first, padded on the right, where causal
    attention keeps the padding from changing any scored position.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    rows = _continuation_rows(requests, _model_context_length(model, context_length))
    scores = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = len(rows[batch[0]][0])
            inputs = torch.zeros(len(batch), width, dtype=torch.long)
            targets = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            for r, i in enumerate(batch):
                model_input, continuation = rows[i]
                inputs[r, : len(model_input)] = torch.tensor(model_input)
                # position t predicts token t + 1 of context + continuation: the last len(continuation) positions
                targets[r, len(model_input) - len(continuation) : len(model_input)] = torch.tensor(continuation)
            log_probs = torch.log_softmax(model(inputs.to(device)).float(), dim=-1).cpu()
            picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            sums = torch.where(targets != IGNORE_INDEX, picked, 0.0).sum(dim=1)
            for r, i in enumerate(batch):
                scores[i] = sums[r].item()
    return scores


@dataclass(frozen=True)
class MultipleChoiceScores:
    """Each item's choices scored: summed log-probabilities and lengths in characters, with the labels."""

    logprobs: list[list[float]]  # per item, per choice: log p(choice | context), summed over its tokens
    num_chars: list[list[int]]  # per item, per choice: characters of the choice
    labels: list[int]

    @property
    def predictions(self) -> list[int]:
        """The choice with the highest summed log-probability (`acc` in the harnesses)."""
        return [max(range(len(lp)), key=lp.__getitem__) for lp in self.logprobs]

    @property
    def predictions_norm(self) -> list[int]:
        """The choice with the highest log-probability per character (`acc_norm`)."""
        per_char = [[lp / n for lp, n in zip(lps, ns, strict=True)] for lps, ns in zip(self.logprobs, self.num_chars,
                                                                                        strict=True)]
        return [max(range(len(s)), key=s.__getitem__) for s in per_char]

    @property
    def accuracy(self) -> float:
        return sum(p == y for p, y in zip(self.predictions, self.labels, strict=True)) / len(self.labels)

    @property
    def accuracy_norm(self) -> float:
        return sum(p == y for p, y in zip(self.predictions_norm, self.labels, strict=True)) / len(self.labels)


def score_multiple_choice(model: torch.nn.Module, tokenizer, items, device="cpu", context_length: int | None = None,
                          batch_size: int = 32) -> MultipleChoiceScores:
    """Score multiple-choice items (`shared.multiple_choice.MultipleChoiceItem`: context, choices, label)
    the way HellaSwag and MMLU are scored: every choice's log-probability as a continuation of the
    context, summed over its tokens (`accuracy`) and divided by its length in characters (`accuracy_norm`).

    The context and each choice are tokenized separately and joined, so every choice is scored on the
    same context tokens. Dividing by characters, not tokens, keeps the normalised score independent of
    the tokenizer (the same reason bits per byte is).
    """
    items = list(items)
    if not items:
        raise ValueError("there are no items to score.")
    requests, shape = [], []
    for number, item in enumerate(items):
        if len(item.choices) < 2 or not 0 <= item.label < len(item.choices):
            raise ValueError(f"item {number} has {len(item.choices)} choices and label {item.label}: it needs at least "
                             "2 choices and a label that indexes one of them.")
        context_ids = tokenizer.encode(item.context)
        requests += [(context_ids, tokenizer.encode(choice)) for choice in item.choices]
        shape.append(len(item.choices))
    flat = continuation_logprobs(model, requests, device, context_length, batch_size)
    logprobs, start = [], 0
    for count in shape:
        logprobs.append(flat[start : start + count])
        start += count
    return MultipleChoiceScores(logprobs, [[len(c) for c in item.choices] for item in items],
                                [item.label for item in items])
