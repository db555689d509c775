"""Models trained by `python -m shared.train`, loaded back: any run's checkpoint, or the small GPT the project ships.

`load_trained_model(path)` rebuilds the model and its tokenizer from one checkpoint file. The shipped
model, pretrained on five Austen novels, is where chapters 6, 7 and appendix E start: no pretrained
GPT-2 weights can be had offline, so the finetuning chapters begin from a model that
`python -m shared.train` made; `shared/data/models/README.md` gives the exact command, the seed and
how well it does. Readers who are online can start from real GPT-2 weights instead (chapter 5).
"""

from __future__ import annotations

import os

import torch

from shared.architectures import build_model
from shared.checkpoint import load_checkpoint
from shared.corpus import DATA_DIR, read_shipped_file
from shared.tokenization import Tokenizer, tokenizer_from_description
from shared.transformer import GPTModel

AUSTEN_GPT = "models/austen-gpt.safetensors"  # under shared/data/, with its sha256 in SHA256SUMS
AUSTEN_GPT_PATH = DATA_DIR / AUSTEN_GPT
AUSTEN_GPT_SFT = "models/austen-gpt-sft.safetensors"  # chapter 7's finetuning of it, where chapter 13 starts
AUSTEN_GPT_SFT_PATH = DATA_DIR / AUSTEN_GPT_SFT


def load_trained_model(path: str | os.PathLike,
                       device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Tokenizer]:
    """The model and tokenizer saved by `python -m shared.train` (or `train()`), in eval mode on `device`.

    The model is the architecture the checkpoint's config names (GPT-2's `GPTModel` unless it says
    `arch` "llama3" or "qwen3"), so the return type is GPTModel or one of chapter 12's models."""
    checkpoint = load_checkpoint(path)  # reads the config and the extra data; the weights come next
    if "tokenizer" not in checkpoint.extra:
        raise ValueError(f"{path} holds no tokenizer: it was not written by `python -m shared.train`.")
    tokenizer = tokenizer_from_description(checkpoint.extra["tokenizer"], source=f"the tokenizer in {path}")
    model = build_model(checkpoint.config)
    load_checkpoint(path, model)
    return model.to(device).eval(), tokenizer


def load_austen_gpt(device: str | torch.device = "cpu") -> tuple[GPTModel, Tokenizer]:
    """The shipped Austen GPT and its tokenizer, in eval mode on `device`: `model, tokenizer = load_austen_gpt()`."""
    return _load_shipped(AUSTEN_GPT, "the pretrained model", "shared/data/models/README.md", device)


def load_austen_gpt_sft(device: str | torch.device = "cpu") -> tuple[GPTModel, Tokenizer]:
    """The shipped chapter 7 model (the Austen GPT instruction-finetuned as chapter 7 does), in eval mode.

    Chapter 13 starts its preference tuning and reinforcement learning from it."""
    return _load_shipped(AUSTEN_GPT_SFT, "the chapter 7 model", "chapters/ch13_post_training/make_sft_model.py",
                         device)


def _load_shipped(name: str, what: str, remake: str, device: str | torch.device) -> tuple[GPTModel, Tokenizer]:
    """A model file shipped under shared/data/, checked against SHA256SUMS, with its tokenizer."""
    path = DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} is missing: {path}. It ships with the project; restore it with "
            f"`git checkout -- shared/data/models`, or make it again with the command in {remake}."
        )
    read_shipped_file(name)  # refuses a corrupt or edited file, naming it
    return load_trained_model(path, device)
