"""Chapter 13's measured outcome: the chapter 7 model against its DPO- and GRPO-tuned versions, over several seeds.

Every run starts from the shipped chapter 7 model and is scored on the 110 held-out test entries
(greedy answers, exact match and word F1, overall and per task). The methods, with the chapter's
settings:

- `sft`: the chapter 7 model as shipped (no tuning; the same for every seed)
- `dpo`: DPO, one epoch over the 935 training pairs, beta 0.1, AdamW at 3e-5
- `dpo_nll`: the same plus the chosen answers' likelihood (weight 1.0), Llama 3's recipe
- `sft_more`: the likelihood term alone (one more epoch of chapter 7's finetuning on the chosen
  answers at 3e-5): the control that says how much of `dpo_nll` is DPO
- `grpo`: 40 GRPO steps of 8 prompts x 8 sampled answers, exact-match reward, AdamW at 1e-4, KL 0.04
- `dpo_beta<b>`: DPO with other betas (seed 123 only), for the trade-off between fitting the
  preferences and staying near the reference (its `val_accuracy` and `kl` columns)

    python chapters/ch13_post_training/post_training_runs.py      # about 8 minutes on 2 cores
    python chapters/ch13_post_training/post_training_runs.py --seeds 123 --methods grpo

Writes `post_training_results.csv` beside this file (one row per method and seed), atomically.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from shared.files import atomic_write_text
from shared.instruction import (
    exact_match,
    generate_responses,
    load_instruction_data,
    score_responses,
    split_data,
    word_f1,
)
from shared.preference import (
    PreferenceDataset,
    evaluate_preferences,
    preference_collate_fn,
    response_kl,
    token_logprobs,
    train_model_dpo_simple,
)
from shared.preference_data import load_preference_data
from shared.pretrained import load_austen_gpt_sft
from shared.rl import train_model_grpo_simple

RESULTS = Path(__file__).resolve().parent / "post_training_results.csv"
TASKS = ("novel", "character", "first_word", "last_word", "repeat")
METHODS = ("sft", "dpo", "dpo_nll", "sft_more", "grpo")
BETAS = (0.02, 0.5)


def preference_loaders(tokenizer, seed: int):
    """The training and validation pairs as loaders (batches of 8, the training ones shuffled by `seed`)."""
    train_pairs, _, val_pairs = split_data(load_preference_data())
    collate = functools.partial(preference_collate_fn, pad_token_id=tokenizer.eot_token)
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(PreferenceDataset(train_pairs, tokenizer, 128), batch_size=8, shuffle=True,
                              drop_last=True, collate_fn=collate, generator=generator)
    val_loader = DataLoader(PreferenceDataset(val_pairs, tokenizer, 128), batch_size=8, collate_fn=collate)
    return train_loader, val_loader


def finetune_on_chosen(model, train_loader, optimizer) -> None:
    """One epoch of `dpo_nll`'s likelihood term alone: the chosen answers' mean negative log-likelihood."""
    model.train()
    for batch in train_loader:
        optimizer.zero_grad()
        per_token = token_logprobs(model(batch["chosen"]), batch["chosen"])
        mask = batch["chosen_sft_mask"][:, 1:].to(per_token.dtype)
        loss = -(per_token * mask).sum() / mask.sum()
        loss.backward()
        optimizer.step()


def run(method: str, seed: int, beta: float = 0.1) -> dict:
    """Tune the chapter 7 model with `method` and score it; returns one results row."""
    torch.manual_seed(seed)
    policy, tokenizer = load_austen_gpt_sft()
    reference, _ = load_austen_gpt_sft()
    train_loader, val_loader = preference_loaders(tokenizer, seed)
    train_entries, test_entries, val_entries = split_data(load_instruction_data())
    if method in ("dpo", "dpo_nll"):
        optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-5, weight_decay=0.0)
        train_model_dpo_simple(policy, reference, train_loader, val_loader, optimizer, 1, beta, eval_freq=10**9,
                               eval_iter=1, nll_weight=0.0 if method == "dpo" else 1.0, verbose=False)
    elif method == "sft_more":
        optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-5, weight_decay=0.0)
        finetune_on_chosen(policy, train_loader, optimizer)
    elif method == "grpo":
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.0)
        train_model_grpo_simple(policy, reference, optimizer, tokenizer, train_entries, val_entries, num_steps=40,
                                prompts_per_step=8, group_size=8, eval_freq=10**9, verbose=False, kl_coef=0.04)
    elif method != "sft":
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}.")
    responses = generate_responses(policy, tokenizer, test_entries, max_new_tokens=20)
    exact = score_responses(test_entries, responses, exact_match)
    f1 = score_responses(test_entries, responses, word_f1)
    preferences = evaluate_preferences(val_loader, policy, reference, beta)
    row = {"method": method if beta == 0.1 else f"dpo_beta{beta}", "seed": seed, "beta": beta,
           "exact_match": round(exact["all"], 4), "word_f1": round(f1["all"], 4),
           "val_accuracy": round(preferences["accuracy"], 4), "val_margin": round(preferences["margin"], 4),
           "kl": round(response_kl(policy, reference, val_loader), 4)}
    row.update({f"exact_{task}": round(exact[task], 4) for task in TASKS})
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[123, 124, 125])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for method in args.methods:
        for seed in args.seeds[:1] if method == "sft" else args.seeds:
            rows.append(run(method, seed))
            print(rows[-1], flush=True)
    if "dpo" in args.methods:
        for beta in BETAS:
            rows.append(run("dpo", args.seeds[0], beta))
            print(rows[-1], flush=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out, text.getvalue())
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
