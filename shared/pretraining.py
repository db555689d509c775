"""Chapter 5 and appendix D: the loss, the training loops, the learning-rate schedule and decoding.

The book's names: `text_to_token_ids`, `token_ids_to_text`, `calc_loss_batch`, `calc_loss_loader`,
`evaluate_model`, `generate_and_print_sample`, `train_model_simple`, `plot_losses`, `generate`
(chapter 5) and `train_model` with linear warmup, cosine decay and gradient clipping (appendix D).
Beyond the book: `generate` uses a key-value cache and offers top-p, `generate_batch` continues prompts of
different lengths in one left-padded batch; `train_model` also does
gradient accumulation, bf16 mixed precision and a progress bar; `lr_at_step` and `train_step` are
the pieces it is built from, which the training command (`shared/train.py`) reuses.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from shared.transformer import decode_with_kv_cache, generate_text_simple

# -- 5.1 text <-> token ids --------------------------------------------------------------------------


def text_to_token_ids(text: str, tokenizer) -> torch.Tensor:
    """Encode `text` as a batch of one sequence, shape (1, num_tokens).

    Defined in section 5.1.1 of the book.
    """
    encoded = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    return torch.tensor(encoded).unsqueeze(0)  # add the batch dimension


def token_ids_to_text(token_ids: torch.Tensor, tokenizer) -> str:
    """Decode a (1, num_tokens) batch, or a flat sequence of ids, back to text.

    Defined in section 5.1.1 of the book.
    """
    flat = token_ids.squeeze(0)  # remove the batch dimension
    return tokenizer.decode(flat.tolist())


# -- 5.1 the loss ----------------------------------------------------------------------------------------


def calc_loss_batch(input_batch, target_batch, model, device) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token predictions over every position of a batch.

    Defined in section 5.1.3 of the book.
    """
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)  # (batch, num_tokens, vocab_size)
    return F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def calc_loss_loader(data_loader, model, device, num_batches=None) -> float:
    """The average of the per-batch losses over the first `num_batches` batches (all by default).

    As in the book, every batch counts equally; `shared/evaluation.py` weighs by tokens instead.

    Defined in section 5.1.3 of the book.
    """
    if len(data_loader) == 0:
        raise ValueError("the data loader has no batches: its text is shorter than one batch of windows. "
                         "Use more text, a smaller batch_size or max_length, or drop_last=False.")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total_loss = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total_loss += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total_loss / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter) -> tuple[float, float]:
    """Training and validation loss over `eval_iter` batches each, in eval mode (no dropout).

    Defined in section 5.2 of the book.
    """
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(model, tokenizer, device, start_context, max_new_tokens=50) -> None:
    """Print a greedy continuation of `start_context` on one line, to watch the model learn.

    Defined in section 5.2 of the book.
    """
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    with torch.no_grad():
        token_ids = generate_text_simple(model, encoded, max_new_tokens, context_size)
    print(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))  # compact print format
    model.train()


# -- 5.2 the simple training loop -------------------------------------------------------------------


def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                       eval_freq, eval_iter, start_context, tokenizer):
    """The book's loop: one optimizer step per batch, losses every `eval_freq` steps, a sample per epoch.

    Returns the training and validation losses and the number of tokens seen at each evaluation.

    Defined in section 5.2 of the book.
    """
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1

    for epoch in range(num_epochs):
        model.train()  # dropout on
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # clear the previous step's gradients
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()  # gradients of the loss
            optimizer.step()  # update the weights
            tokens_seen += input_batch.numel()
            global_step += 1

            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")

        generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen


def plot_losses(epochs_seen, tokens_seen, train_losses, val_losses):
    """Training and validation loss against epochs, with tokens seen on a second x-axis; returns the figure.

    Defined in section 5.2 of the book.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(epochs_seen, train_losses, label="Training loss")
    ax1.plot(epochs_seen, val_losses, linestyle="-.", label="Validation loss")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel("Loss")
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
    ax2 = ax1.twiny()  # a second x-axis that shares the y-axis
    ax2.plot(tokens_seen, train_losses, alpha=0)  # invisible: only aligns the tick marks
    ax2.set_xlabel("Tokens seen")
    fig.tight_layout()
    return fig


# -- 5.3 decoding: temperature, top-k, top-p ------------------------------------------------------------


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities reach `top_p`; -inf the rest.

    Equally likely tokens are taken in id order (a stable sort), so the kept set is always the same.

    Beyond the book.
    """
    if top_p >= 1.0:
        return logits  # all of the mass: keep every token (a float sum may fall short of exactly 1)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # Drop a token when the tokens before it already reach top_p (so the first token always stays).
    drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, -torch.inf)


def _check_decoding(temperature, top_k, top_p) -> None:
    if not (temperature >= 0 and math.isfinite(temperature)):  # NaN fails both comparisons
        raise ValueError(f"temperature={temperature} is not a number >= 0: use 0.0 for greedy decoding or a "
                         "value > 0, e.g. 0.8.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k}: keep at least 1 token, or pass None to keep them all.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} is not in (0, 1]: it is the probability mass to keep, e.g. 0.9.")


def next_token_logits_to_id(logits, temperature=0.0, top_k=None, top_p=None) -> torch.Tensor:
    """Pick the next token from the last position's logits (batch, vocab): greedy, or sampled.

    Beyond the book: one step of section 5.3.3's `generate` (top-k, temperature), as a function.
    """
    if top_k is not None:
        top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]))
        min_val = top_logits[:, -1:]  # the k-th largest logit of each row
        logits = torch.where(logits < min_val, torch.tensor(-torch.inf, device=logits.device), logits)
    if temperature > 0.0:
        logits = logits / temperature
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, num_samples=1)  # (batch, 1)
    return torch.argmax(logits, dim=-1, keepdim=True)  # greedy


def generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None, top_p=None):
    """Extend `idx` (batch, num_tokens) by up to `max_new_tokens` tokens.

    temperature 0.0 picks the most likely token (greedy); above 0 it samples from the softmax of
    logits / temperature, restricted to the `top_k` most likely tokens and/or the `top_p` probability
    mass. Generation stops when every sequence has produced `eos_id` (which is not appended; a
    sequence that finishes early is padded with it). The loop is `generate_text_cached`'s (chapter 4):
    a key-value cache runs one new token per model call, giving the book's loop's results in a
    fraction of its time.

    Defined in section 5.3.3 of the book; the cache, `top_p` and batches that finish early are beyond it.
    """
    _check_decoding(temperature, top_k, top_p)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} is negative: ask for 0 or more new tokens, e.g. 50.")
    finished = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)  # produced eos_id yet?

    def pick_next_token(logits):
        nonlocal finished
        idx_next = next_token_logits_to_id(logits, temperature, top_k, top_p)
        if eos_id is not None:
            finished |= idx_next == eos_id
            if finished.all():
                return None  # every sequence is done: stop
            idx_next = idx_next.masked_fill(finished, eos_id)
        return idx_next

    return decode_with_kv_cache(model, idx, max_new_tokens, context_size, pick_next_token)


def _prompt_as_ids(prompt, index: int, context_size: int, vocab_size: int | None) -> list[int]:
    """One prompt of `generate_batch` as a list of token ids, checked; errors name the prompt's index."""
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 1 or prompt.dtype.is_floating_point or prompt.dtype.is_complex or prompt.dtype == torch.bool:
            raise ValueError(f"prompt {index} is a tensor of shape {tuple(prompt.shape)} and dtype {prompt.dtype}: "
                             "give each prompt as a 1-D tensor of integer token ids (or a list of ints).")
        ids = prompt.tolist()
    elif isinstance(prompt, (list, tuple)):
        ids = list(prompt)
        bad = next((t for t in ids if isinstance(t, bool) or not isinstance(t, int)), None)
        if bad is not None:
            raise ValueError(f"prompt {index} holds {bad!r} ({type(bad).__name__}): token ids are ints. "
                             "Encode text first, e.g. tokenizer.encode(text).")
    else:
        raise ValueError(f"prompt {index} is a {type(prompt).__name__}, not a list of token ids or a 1-D tensor: "
                         "encode text first, e.g. tokenizer.encode(text).")
    if not ids:
        raise ValueError(f"prompt {index} is empty: every prompt needs at least one token to continue.")
    if len(ids) > context_size:
        raise ValueError(f"prompt {index} has {len(ids)} tokens, more than context_size={context_size}: crop it "
                         f"to its last {context_size} tokens, e.g. ids[-{context_size}:].")
    if vocab_size is not None and not 0 <= min(ids) <= max(ids) < vocab_size:
        wrong = min(ids) if min(ids) < 0 else max(ids)
        raise ValueError(f"prompt {index} holds the token id {wrong}, outside the model's vocabulary of "
                         f"{vocab_size} ids (0 to {vocab_size - 1}): encode it with the model's tokenizer.")
    return ids


def generate_batch(model, prompts: Sequence[Sequence[int] | torch.Tensor], max_new_tokens: int, context_size: int,
                   temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                   eos_id: int | None = None, pad_id: int = 0) -> list[list[int]]:
    """Continue several prompts of different lengths at once: one list of new token ids per prompt.

    The prompts (lists of ids or 1-D tensors) are left-padded with `pad_id` into one batch and one
    key-value cache; the cache's `LeftPadding` hides the padding from attention and starts each row
    at position 0, so greedy decoding gives each prompt the tokens `generate` gives it alone.
    Decoding options are `generate`'s; a continuation stops before `eos_id`, and the batch stops when
    all have. A model without `supports_left_padding` (GPTModel has it) runs its prompts in groups of
    equal length instead.

    Beyond the book.
    """
    _check_decoding(temperature, top_k, top_p)
    if isinstance(prompts, (str, torch.Tensor)) or not isinstance(prompts, Sequence):
        raise ValueError(f"prompts is a {type(prompts).__name__}: give a list of prompts, each a list of token "
                         "ids or a 1-D tensor (for a (batch, tokens) tensor of equal-length prompts, use generate).")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: give at least one prompt (a list of token ids).")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: ask for a whole number >= 0 of new tokens, e.g. 50.")
    if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 1:
        raise ValueError(f"context_size={context_size!r}: give the model's context length, a whole number >= 1, "
                         "e.g. model.cfg['context_length'].")
    vocab_size = getattr(model, "cfg", {}).get("vocab_size")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0 or (vocab_size and pad_id >= vocab_size):
        raise ValueError(f"pad_id={pad_id!r} is not a token id of the model: use any id in [0, vocab_size), e.g. 0 "
                         "(padding is never attended to, so which one does not matter).")
    ids = [_prompt_as_ids(prompt, i, context_size, vocab_size) for i, prompt in enumerate(prompts)]
    lengths = [len(row) for row in ids]

    if len(set(lengths)) > 1 and not getattr(model, "supports_left_padding", False):
        results: list[list[int]] = [[] for _ in ids]
        for length in sorted(set(lengths)):
            group = [i for i, n in enumerate(lengths) if n == length]
            continuations = generate_batch(model, [ids[i] for i in group], max_new_tokens, context_size,
                                           temperature, top_k, top_p, eos_id, pad_id)
            for i, continuation in zip(group, continuations):
                results[i] = continuation
        return results

    device = next(model.parameters()).device
    width = max(lengths)
    idx = torch.tensor([[pad_id] * (width - len(row)) + row for row in ids], device=device)  # left-padded
    pad_lengths = torch.tensor([width - n for n in lengths], device=device)
    finished = torch.zeros(len(ids), 1, dtype=torch.bool, device=device)  # produced eos_id yet?

    def pick_next_token(logits):
        nonlocal finished
        idx_next = next_token_logits_to_id(logits, temperature, top_k, top_p)
        if eos_id is not None:
            finished |= idx_next == eos_id
            if finished.all():
                return None  # every prompt is done: stop
            idx_next = idx_next.masked_fill(finished, eos_id)
        return idx_next

    out = decode_with_kv_cache(model, idx, max_new_tokens, context_size, pick_next_token, pad_lengths)
    continuations = out[:, width:].tolist()
    if eos_id is not None:
        continuations = [row[:row.index(eos_id)] if eos_id in row else row for row in continuations]
    return continuations


# -- appendix D: warmup, cosine decay, clipping, and the loop that combines them -----------------------


def lr_at_step(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int,
               initial_lr: float = 3e-5, min_lr: float = 1e-6) -> float:
    """The learning rate for optimizer step `step` (0-based): linear warmup, then cosine decay.

    Warmup climbs from `initial_lr` to `peak_lr` over `warmup_steps` steps; the cosine then falls from
    `peak_lr` to `min_lr` at the last step, `total_steps - 1`.

    The schedule of appendix D's sections D.1 and D.2, which the book computes inside its loop.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} with total_steps={total_steps}: warmup needs 0 or more "
                         "steps, fewer than the whole run, e.g. a tenth of it.")
    if not (peak_lr > 0 and initial_lr >= 0 and min_lr >= 0):  # NaN fails these too
        raise ValueError(f"peak_lr={peak_lr}, initial_lr={initial_lr}, min_lr={min_lr}: the peak must be positive "
                         "and the others 0 or more, e.g. peak_lr=5e-4, initial_lr=1e-5, min_lr=1e-6.")
    if step < warmup_steps:
        return initial_lr + (peak_lr - initial_lr) * step / warmup_steps
    decay_steps = max(total_steps - 1 - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def resolve_precision(precision: str, device) -> str:
    """'fp32' or 'bf16' for `device`; 'auto' picks bf16 only where it is fast (CUDA GPUs that have it).

    On CPUs, bf16 autocast works but is usually slower than fp32 unless the CPU has bf16 matrix
    units (e.g. Intel AMX), so 'auto' keeps fp32 there; ask for 'bf16' explicitly to try it. fp16 is
    not offered: its narrow range needs a gradient scaler, which bf16 (fp32's range) does without.

    Beyond the book.
    """
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if precision not in ("fp32", "bf16"):
        fp16 = " (fp16 needs a gradient scaler and is not offered; bf16 does not)" if precision == "fp16" else ""
        raise ValueError(f"precision={precision!r}: use 'fp32', 'bf16' or 'auto'{fp16}.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError("this GPU has no bf16 support (it needs compute capability 8.0, e.g. an A100 or "
                         "RTX 30xx): use precision='fp32'.")
    if precision == "bf16" and device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(f"bf16 autocast is not available on {device.type}: use precision='fp32'.")
    return precision


def autocast(device, precision: str):
    """A context that runs the forward pass in bf16 where safe (matrix products), or does nothing for fp32.

    Beyond the book.
    """
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model, micro_batches, optimizer, device, *, lr=None, max_norm=None,
               precision="fp32") -> tuple[float, float | None]:
    """One optimizer step over one or more (input, target) micro-batches (gradient accumulation).

    Each micro-batch's loss is divided by the number of micro-batches, so equal-sized micro-batches
    give the gradient of one large batch. Sets the learning rate to `lr` if given (times a group's
    "lr_scale" where the optimizer gives one), clips the gradient norm to `max_norm` if given.
    Returns the mean loss and the norm before clipping (None when not clipping).

    Beyond the book.
    """
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
    optimizer.zero_grad(set_to_none=True)
    total_loss = 0.0
    for input_batch, target_batch in micro_batches:
        with autocast(device, precision):
            loss = calc_loss_batch(input_batch, target_batch, model, device) / len(micro_batches)
        loss.backward()
        total_loss += loss.item()
    grad_norm = None
    if max_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm).item()
    optimizer.step()
    return total_loss, grad_norm


def _groups(loader, size):
    """The loader's batches in lists of `size` (the last list may be shorter)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _total_steps(train_loader, n_epochs, warmup_steps, accumulation_steps, eval_freq) -> int:
    """The number of optimizer steps `train_model` takes, once its settings are checked."""
    if accumulation_steps < 1 or eval_freq < 1:
        raise ValueError(f"accumulation_steps={accumulation_steps} and eval_freq={eval_freq} must be at least 1 "
                         "(micro-batches per optimizer step, optimizer steps between evaluations).")
    total_steps = math.ceil(len(train_loader) / accumulation_steps) * n_epochs
    if total_steps <= warmup_steps:
        raise ValueError(f"warmup_steps={warmup_steps} but training has only {total_steps} optimizer steps: "
                         "use fewer warmup steps or more epochs.")
    return total_steps


def _progress_bar(total_steps: int, enabled: bool):
    """A tqdm progress bar over the optimizer steps; when not `enabled`, one that shows nothing."""
    with warnings.catch_warnings():  # without ipywidgets, Jupyter gets a text bar instead of a widget: fine
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm
    return tqdm(total=total_steps, unit="step", disable=not enabled)


def train_model(model, train_loader, val_loader, optimizer, device, n_epochs, eval_freq, eval_iter,
                start_context, tokenizer, warmup_steps, initial_lr=3e-05, min_lr=1e-6, *,
                max_norm=1.0, accumulation_steps=1, precision="fp32", progress=False, print_sample=True):
    """Appendix D's loop: linear warmup, cosine decay and gradient clipping (after warmup, as in the book).

    The peak learning rate is the optimizer's. Beyond the book: `accumulation_steps` micro-batches
    per optimizer step, `precision='bf16'` autocast, and `progress=True` for a progress bar with the
    loss and tokens/s. Returns train losses, validation losses, tokens seen and the learning rates.

    Defined in section D.4 of the book (appendix D).
    """
    total_steps = _total_steps(train_loader, n_epochs, warmup_steps, accumulation_steps, eval_freq)
    peak_lr = optimizer.param_groups[0]["lr"]
    train_losses, val_losses, track_tokens_seen, track_lrs = [], [], [], []
    tokens_seen, global_step = 0, -1
    bar = _progress_bar(total_steps, progress)
    started = time.perf_counter()

    for epoch in range(n_epochs):
        model.train()
        for micro_batches in _groups(train_loader, accumulation_steps):
            global_step += 1
            lr = lr_at_step(global_step, peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps,
                            initial_lr=initial_lr, min_lr=min_lr)
            track_lrs.append(lr)
            clip = max_norm if global_step >= warmup_steps else None  # the book clips after warmup
            loss, _ = train_step(model, micro_batches, optimizer, device, lr=lr, max_norm=clip,
                                 precision=precision)
            tokens_seen += sum(inputs.numel() for inputs, _ in micro_batches)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}",
                            tok_s=f"{tokens_seen / (time.perf_counter() - started):,.0f}")

            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                if not progress:
                    print(f"Ep {epoch + 1} (Iter {global_step:06d}): "
                          f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        if print_sample:
            generate_and_print_sample(model, tokenizer, device, start_context)
    bar.close()
    return train_losses, val_losses, track_tokens_seen, track_lrs
