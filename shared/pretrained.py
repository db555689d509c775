"""The small GPT the project ships, pretrained on five Austen novels: where chapters 6, 7 and appendix E start.

No pretrained GPT-2 weights can be had offline, so the finetuning chapters begin from a model that
`python -m shared.train` made; `shared/data/models/README.md` gives the exact command, the seed and
how well it does. Readers who are online can start from real GPT-2 weights instead (chapter 5).
"""

from __future__ import annotations

import torch

from shared.data import DATA_DIR, read_shipped_file
from shared.generate import load_trained_model

AUSTEN_GPT = "models/austen-gpt.safetensors"  # under shared/data/, with its sha256 in SHA256SUMS
AUSTEN_GPT_PATH = DATA_DIR / AUSTEN_GPT


def load_austen_gpt(device: str | torch.device = "cpu"):
    """The shipped Austen GPT and its tokenizer, in eval mode on `device`: `model, tokenizer = load_austen_gpt()`."""
    if not AUSTEN_GPT_PATH.is_file():
        raise FileNotFoundError(
            f"the pretrained model is missing: {AUSTEN_GPT_PATH}. It ships with the project; restore it with "
            "`git checkout -- shared/data/models`, or make it again with the command in shared/data/models/README.md."
        )
    read_shipped_file(AUSTEN_GPT)  # refuses a corrupt or edited file, naming it
    return load_trained_model(str(AUSTEN_GPT_PATH), device)
