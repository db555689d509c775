"""Make `shared/data/models/austen-gpt-sft.safetensors`, the chapter 7 model that chapter 13 starts from.

It is chapter 7's finetuning, step for step: the shipped Austen GPT, the instruction data's 935
training entries in the Alpaca format, batches of 8 shuffled with seed 123, AdamW at 2e-3 (weight
decay 0.1) for four epochs, every token learned (prompt included). The weights are then stored in
bfloat16, as the pretrained model is, and chapter 13's preference data is made from this file.

    python chapters/ch13_post_training/make_sft_model.py            # about a minute on 2 cores
    python -m shared.preference_data                                # then the preference pairs again

Sums of floats may round differently on another CPU or thread count, so a rerun need not match the
shipped file bit for bit; its test scores should agree closely (shared/data/models/README.md).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from shared.checkpoint import export_weights, save_checkpoint
from shared.instruction import (
    InstructionDataset,
    custom_collate_fn,
    exact_match,
    format_input,
    generate_responses,
    load_instruction_data,
    score_responses,
    split_data,
)
from shared.pretrained import AUSTEN_GPT_SFT_PATH, load_austen_gpt
from shared.pretraining import train_model_simple
from shared.tokenization import describe_tokenizer


def finetune_like_chapter_7(epochs: int = 4, seed: int = 123):
    """The pretrained Austen GPT after chapter 7's instruction finetuning, with its tokenizer."""
    model, tokenizer = load_austen_gpt()
    train_data, _, val_data = split_data(load_instruction_data())
    context = model.cfg["context_length"]
    collate = functools.partial(custom_collate_fn, pad_token_id=tokenizer.eot_token, allowed_max_length=context)
    torch.manual_seed(seed)
    train_loader = DataLoader(InstructionDataset(train_data, tokenizer, max_length=context), batch_size=8,
                              collate_fn=collate, shuffle=True, drop_last=True)
    val_loader = DataLoader(InstructionDataset(val_data, tokenizer, max_length=context), batch_size=8,
                            collate_fn=collate)
    torch.manual_seed(seed)  # as chapter 7's training cell: the shuffling (and its evaluations) follow from here
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    train_model_simple(model, train_loader, val_loader, optimizer, "cpu", num_epochs=epochs, eval_freq=80,
                       eval_iter=5, start_context=format_input(val_data[0]), tokenizer=tokenizer)
    return model.eval(), tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=AUSTEN_GPT_SFT_PATH, help="where to write the bfloat16 weights")
    args = parser.parse_args(argv)
    model, tokenizer = finetune_like_chapter_7()
    with tempfile.TemporaryDirectory() as tmp:
        full = save_checkpoint(Path(tmp) / "sft.safetensors", model,
                               extra={"tokenizer": describe_tokenizer(tokenizer),
                                      "made_by": "chapters/ch13_post_training/make_sft_model.py"})
        export_weights(full, args.out, dtype=torch.bfloat16)
    _, test_data, _ = split_data(load_instruction_data())
    scores = score_responses(test_data, generate_responses(model, tokenizer, test_data, max_new_tokens=20),
                             exact_match)
    print(f"wrote {args.out}; test exact match " + ", ".join(f"{k} {v:.1%}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
