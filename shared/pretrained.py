"""Models trained by `python -m shared.train`, loaded back: any run's checkpoint, or the small GPT the project ships.

`load_trained_model(path)` rebuilds the model and its tokenizer from one checkpoint file. The shipped
model, pretrained on five Austen novels, is where chapters 6, 7 and appendix E start: no pretrained
GPT-2 weights can be had offline, so the finetuning chapters begin from a model that
`python -m shared.train` made; `shared/data/models/README.md` gives the exact command, the seed and
how well it does. Readers who are online can start from real GPT-2 weights instead (chapter 5).
"""

from __future__ import annotations

import os
from pathlib import Path

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


def load_state_dict_file(path: str | os.PathLike, base: str | os.PathLike | None = None,
                         device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Tokenizer]:
    """A model saved the book's way, `torch.save(model.state_dict(), "name.pth")` (chapters 5-7), rebuilt.

    Such a file holds weights only, so the architecture and tokenizer come from `base`: the checkpoint
    the model was finetuned from (default: the shipped Austen GPT, where chapters 6 and 7 start). An
    output layer with fewer rows than the vocabulary is chapter 6's classification head. Beyond the book.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}: give the path of a .pth file saved with "
                                "torch.save(model.state_dict(), path), or a checkpoint of `python -m shared.train`.")
    try:  # weights_only: the file is read as data, never run as code
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a saved state dict
        raise ValueError(f"{path} could not be read as a saved state dict ({type(err).__name__}): it is damaged, "
                         "or not a file that torch.save(model.state_dict(), path) wrote. Save the model again, "
                         "or give a checkpoint of `python -m shared.train`.") from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict (names -> tensors): save "
                         "it with torch.save(model.state_dict(), path).")
    if base is None:
        model, tokenizer = load_austen_gpt()
    else:
        model, tokenizer = load_trained_model(base)
    head = state_dict.get("out_head.weight")
    if head is not None and head.dim() == 2 and head.shape[0] != model.out_head.out_features:
        model.out_head = torch.nn.Linear(head.shape[1], head.shape[0])  # chapter 6's classifier
    missing, unexpected = _key_mismatch(model, state_dict)
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the base model ({base or AUSTEN_GPT_PATH.name}): "
                         f"{len(missing)} weight(s) missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                         f"(e.g. {unexpected[:3]}). Give the checkpoint it was finetuned from as the base.")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:  # same names, other shapes
        raise ValueError(f"{path} does not fit the base model's shapes: {str(err).splitlines()[-1].strip()} "
                         "Give the checkpoint it was finetuned from as the base.") from None
    return model.to(device).eval(), tokenizer


def _key_mismatch(model: torch.nn.Module, state_dict: dict) -> tuple[list[str], list[str]]:
    """Names the model expects but the state dict lacks, and names it has that the model does not."""
    expected = set(model.state_dict())
    return sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
