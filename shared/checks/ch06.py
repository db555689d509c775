"""Checks for chapter 6's exercises (finetuning for classification): padding, training every layer, the first token."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from shared.checks.common import correct, not_attempted
from shared.classification import calc_accuracy_loader


def _padded_inputs(train_dataset) -> torch.Tensor:
    """The dataset's token ids as one (texts, tokens) tensor: `ClassificationDataset.inputs`, or its items stacked."""
    inputs = getattr(train_dataset, "inputs", None)
    if isinstance(inputs, torch.Tensor):
        return inputs
    return torch.stack([torch.as_tensor(train_dataset[i][0]) for i in range(len(train_dataset))])


def check_exercise_6_1(train_dataset, model) -> None:
    """Exercise 6.1: the training texts padded to the model's whole context length, not to the longest text."""
    if not_attempted("6.1", train_dataset):
        return
    assert isinstance(train_dataset, Dataset) and hasattr(train_dataset, "max_length"), (
        f"train_dataset is a {type(train_dataset).__name__}; build it with ClassificationDataset(csv_file, tokenizer, "
        "max_length=...), or with the book's SpamDataset shown in the chapter"
    )
    context_length = model.pos_emb.weight.shape[0]
    inputs = _padded_inputs(train_dataset)
    assert train_dataset.max_length == context_length and inputs.shape[1] == context_length, (
        f"the texts are padded to {inputs.shape[1]} tokens, but the model reads {context_length}: "
        "pass max_length=model.pos_emb.weight.shape[0] (the context length) to the dataset"
    )
    pad_token_id = getattr(train_dataset, "pad_token_id", None)
    if pad_token_id is None:  # a dataset that does not say: its most common last token
        pad_token_id = int(inputs[:, -1].mode().values)
    padded = (inputs[:, -1] == pad_token_id).float().mean().item()
    assert padded > 0.5, (
        f"only {padded:.0%} of the texts end in the pad token <|endoftext|>: pad with the tokenizer's "
        "<|endoftext|> id (tokenizer.eot_token)"
    )
    correct("6.1", f"every text is now {context_length} tokens long; {padded:.0%} of them end in padding.")


def check_exercise_6_2(model, num_classes: int) -> None:
    """Exercise 6.2: every parameter of the classifier trainable, not only the last block, final norm and head."""
    if not_attempted("6.2", model):
        return
    out_features = getattr(getattr(model, "out_head", None), "out_features", None)
    assert out_features == num_classes, (
        f"the model's out_head has {out_features} outputs; replace it with nn.Linear(emb_dim, {num_classes}) first, "
        "as the chapter does"
    )
    frozen = [name for name, param in model.named_parameters() if not param.requires_grad]
    assert not frozen, (
        f"{len(frozen)} parameter tensors are still frozen, e.g. {frozen[0]}: set requires_grad = True on every "
        "parameter (for param in model.parameters(): ...) before making the optimizer"
    )
    total = sum(param.numel() for param in model.parameters())
    correct("6.2", f"all {total:,} parameters train.")


def check_exercise_6_3(first_token_accuracy, model, data_loader) -> None:
    """Exercise 6.3: the accuracy of a classifier that reads the first token's logits instead of the last's."""
    if not_attempted("6.3", first_token_accuracy):
        return
    device = next(model.parameters()).device
    assert isinstance(first_token_accuracy, float) and 0 <= first_token_accuracy <= 1, (
        f"first_token_accuracy is {first_token_accuracy!r}; give the fraction calc_accuracy_loader returns, "
        "a float from 0 to 1"
    )
    expected = calc_accuracy_loader(data_loader, model, device, token_index=0)
    last = calc_accuracy_loader(data_loader, model, device, token_index=-1)
    reads_last = abs(first_token_accuracy - last) < 1e-9 and abs(last - expected) > 1e-9
    hint = " (that is the last token's accuracy)" if reads_last else ""
    assert abs(first_token_accuracy - expected) < 1e-6, (
        f"first_token_accuracy is {first_token_accuracy:.4f}{hint}, but the model reading the first token scores "
        f"{expected:.4f} on this loader: pass token_index=0 to calc_accuracy_loader (and to the training loop)"
    )
    correct("6.3", f"reading the first token: {expected:.1%}, the last token: {last:.1%} on this loader.")
