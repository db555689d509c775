"""Chapter 6: finetuning a GPT to classify texts, from the dataset to `classify_text`.

The book's names: `create_balanced_dataset`, `random_split`, `SpamDataset`, `calc_accuracy_loader`,
`calc_loss_batch`, `calc_loss_loader`, `evaluate_model`, `train_classifier_simple`, `plot_values`,
`classify_text` (the book's `classify_review`, for any number of classes) and
`download_and_unzip_spam_data`. Here the loss and the accuracy read the logits of one position,
the last token by default (`token_index=-1`): in a causal model it is the only one that has seen
the whole text.

The chapter's task runs on shipped data: which of the six Austen novels a passage of a few
sentences comes from (`novel_passages_dataframe`). The book's SMS Spam Collection is downloaded by
`download_and_unzip_spam_data` for readers who are online (checked, cached, written atomically).
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from shared.corpus import NOVELS, load_novel
from shared.files import atomic_write_bytes, check_sha256, download
from shared.tokenization import vocab_size_of
from shared.weights import DEFAULT_CACHE_DIR

# -- 6.2 the dataset: passages of the shipped novels -----------------------------------------------------

_HEADING = re.compile(r"^(CHAPTER|Chapter|VOLUME|Volume)\b")  # chapter and volume titles are no passages
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'])\s+")  # after . ! ? (and a closing quote)
_ABBREVIATION = re.compile(r"\b(Mr|Mrs|Dr|St)\.$")  # "Mr. Darcy" is one sentence, not two


def _paragraphs(text: str) -> Iterable[str]:
    """The paragraphs of a novel, each on one line, without chapter headings and all-capital titles."""
    for block in re.split(r"\n\s*\n", text):
        paragraph = " ".join(block.split())
        if paragraph and not _HEADING.match(paragraph) and not paragraph.isupper():
            yield paragraph


def _sentences(paragraph: str) -> list[str]:
    sentences = []
    for piece in _SENTENCE_END.split(paragraph):
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] += " " + piece  # the split after "Mr." was not a sentence end
        else:
            sentences.append(piece)
    return sentences


def novel_passages(text: str, min_words: int = 30, max_words: int = 60) -> list[str]:
    """Cut a novel into passages of whole consecutive sentences, each `min_words` to `max_words` words.

    Passages do not overlap. A sentence longer than `max_words` is skipped, and so are the sentences
    gathered before it that did not yet reach `min_words`.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"min_words={min_words} and max_words={max_words}: need 1 <= min_words <= max_words.")
    passages, current, words = [], [], 0
    for paragraph in _paragraphs(text):
        for sentence in _sentences(paragraph):
            n = len(sentence.split())
            if words + n > max_words:  # the passage would grow too long: drop it and start afresh
                current, words = [], 0
                if n > max_words:
                    continue
            current.append(sentence)
            words += n
            if words >= min_words:
                passages.append(" ".join(current))
                current, words = [], 0
    return passages


def novel_passages_dataframe(names: Sequence[str] = NOVELS, min_words: int = 30, max_words: int = 60) -> pd.DataFrame:
    """Every passage of the named shipped novels, as a DataFrame with the book's columns: Label (the
    novel's file name, e.g. "emma") and Text."""
    rows = [(name, passage) for name in names for passage in novel_passages(load_novel(name), min_words, max_words)]
    return pd.DataFrame(rows, columns=["Label", "Text"])


def create_balanced_dataset(df: pd.DataFrame, label_column: str = "Label", per_class: int | None = None,
                            seed: int = 123) -> pd.DataFrame:
    """The same number of rows of every class, drawn at random (seeded) without replacement.

    The book keeps all 747 spam messages and draws as many of the 4,825 "ham" ones; for any number
    of classes this means `per_class` rows of each, by default as many as the smallest class has.
    """
    counts = df[label_column].value_counts()
    if per_class is None:
        per_class = int(counts.min())
    if per_class > counts.min():
        raise ValueError(f"per_class={per_class}, but class {counts.idxmin()!r} has only {counts.min()} rows: "
                         f"ask for at most {counts.min()}.")
    parts = [df[df[label_column] == label].sample(per_class, random_state=seed) for label in counts.index]
    return pd.concat(parts).sort_index()  # back in the original order: the split below shuffles


def random_split(df: pd.DataFrame, train_frac: float, validation_frac: float,
                 seed: int = 123) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle the rows (seeded) and cut them into training, validation and test parts; the test
    part gets what is left, 1 - train_frac - validation_frac."""
    if not (0 < train_frac and 0 <= validation_frac and train_frac + validation_frac < 1):
        raise ValueError(f"train_frac={train_frac} and validation_frac={validation_frac} must be fractions "
                         "that leave some rows for the test set, e.g. 0.7 and 0.1.")
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)  # shuffle
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return df[:train_end], df[train_end:validation_end], df[validation_end:]


# -- 6.3 data loaders: every text padded to the same length ----------------------------------------------


def _read_table(csv_file, text_column: str, label_column: str) -> tuple[pd.DataFrame, str]:
    """The CSV file (or DataFrame) and its name for error messages; it must have both columns, rows and texts."""
    data = csv_file if isinstance(csv_file, pd.DataFrame) else pd.read_csv(csv_file)
    source = "the DataFrame" if isinstance(csv_file, pd.DataFrame) else str(csv_file)
    missing = [c for c in (text_column, label_column) if c not in data.columns]
    if missing:
        raise KeyError(f"{source} has no column {missing[0]!r}; its columns are {list(data.columns)}.")
    if len(data) == 0:
        raise ValueError(f"{source} has no rows: there is nothing to classify.")
    for row, text in enumerate(data[text_column].tolist()):
        if not isinstance(text, str) or not text:
            raise ValueError(f"row {row} of {source} has no text ({text!r}); remove it or fill it in.")
    return data, source


def _pad_id(tokenizer, pad_token_id: int | None) -> int:
    """`pad_token_id`, or by default the tokenizer's `<|endoftext|>` id; checked against the vocabulary."""
    if pad_token_id is None:
        pad_token_id = getattr(tokenizer, "eot_token", None)
        if pad_token_id is None:
            raise ValueError("the tokenizer has no <|endoftext|> token to pad with: pass pad_token_id=... explicitly.")
    vocab_size = vocab_size_of(tokenizer)
    if vocab_size is not None and not 0 <= pad_token_id < vocab_size:
        raise ValueError(f"pad_token_id={pad_token_id} is not one of the tokenizer's {vocab_size} ids. "
                         "Leave it out to pad with the tokenizer's <|endoftext|> id.")
    return pad_token_id


def _check_labels(labels: list, num_classes: int | None, source: str) -> list[int]:
    """The labels as ints, or a clear error naming the first one that is not a class index."""
    checked = []
    for row, label in enumerate(labels):
        whole_number = isinstance(label, int) or isinstance(label, float) and label.is_integer()  # 1.0 is fine
        if isinstance(label, bool) or not whole_number:
            raise ValueError(f"row {row} of {source} has the label {label!r}; labels must be class numbers "
                             "0, 1, 2, ...: map names to numbers first, e.g. df['Label'].map({'ham': 0, 'spam': 1}).")
        label = int(label)
        if label < 0 or num_classes is not None and label >= num_classes:
            classes = f"0 to {num_classes - 1}" if num_classes is not None else "0 or more"
            raise ValueError(f"row {row} of {source} has the label {label}, outside the classes {classes}.")
        checked.append(label)
    return checked


class ClassificationDataset(Dataset):
    """Texts and integer class labels from a CSV file (or a DataFrame), as padded token-id tensors.

    The book's `SpamDataset` (section 6.3), with checked inputs: every text is encoded and padded
    with `pad_token_id` to `max_length` tokens, by default the length of the longest text (longer
    texts are truncated to a given `max_length`). The pad id defaults to the tokenizer's
    `<|endoftext|>` (50,256 for GPT-2). Labels must be whole numbers below `num_classes` if given.
    """

    def __init__(self, csv_file, tokenizer, max_length: int | None = None, pad_token_id: int | None = None,
                 *, num_classes: int | None = None, text_column: str = "Text", label_column: str = "Label"):
        self.data, source = _read_table(csv_file, text_column, label_column)
        self.pad_token_id = _pad_id(tokenizer, pad_token_id)
        self.labels = _check_labels(self.data[label_column].tolist(), num_classes, source)
        self.encoded_texts = [tokenizer.encode(text) for text in self.data[text_column]]

        if max_length is None:
            self.max_length = self._longest_encoded_length()
        else:
            if max_length < 1:
                raise ValueError(f"max_length={max_length}: it must be at least 1 token.")
            self.max_length = max_length
            self.encoded_texts = [ids[:max_length] for ids in self.encoded_texts]  # truncate longer texts
        self.encoded_texts = [ids + [self.pad_token_id] * (self.max_length - len(ids)) for ids in self.encoded_texts]
        self.inputs = torch.tensor(self.encoded_texts, dtype=torch.long)  # (num_texts, max_length)
        self.targets = torch.tensor(self.labels, dtype=torch.long)

    def __getitem__(self, index):
        return self.inputs[index], self.targets[index]

    def __len__(self):
        return len(self.inputs)

    def _longest_encoded_length(self) -> int:
        return max(len(ids) for ids in self.encoded_texts)


SpamDataset = ClassificationDataset  # the book's name for it


# -- 6.5 the classification head ---------------------------------------------------------------------------


def add_classification_head(model: nn.Module, num_classes: int, trainable_blocks: int = 1) -> nn.Module:
    """The book's recipe, in place: freeze the model, replace `out_head` by a new trainable layer with
    `num_classes` outputs, and make the final norm and the last `trainable_blocks` transformer blocks
    trainable again (the book trains the last of GPT-2's 12 blocks: `trainable_blocks=1`)."""
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
    if not 0 <= trainable_blocks <= len(model.trf_blocks):
        raise ValueError(f"trainable_blocks={trainable_blocks}, but the model has {len(model.trf_blocks)} blocks: "
                         f"choose from 0 to {len(model.trf_blocks)}.")
    for param in model.parameters():
        param.requires_grad = False
    emb_dim = model.out_head.in_features
    model.out_head = nn.Linear(emb_dim, num_classes).to(model.out_head.weight.device)  # trainable: a new layer
    for block in model.trf_blocks[len(model.trf_blocks) - trainable_blocks:]:
        for param in block.parameters():
            param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    return model


# -- 6.6 loss and accuracy, on one token's logits ----------------------------------------------------------


def _check_targets(target_batch: torch.Tensor, num_classes: int) -> None:
    if target_batch.numel() and (target_batch.min() < 0 or target_batch.max() >= num_classes):
        bad = target_batch[(target_batch < 0) | (target_batch >= num_classes)][0].item()
        raise ValueError(f"the label {bad} is outside the model's {num_classes} classes (0 to {num_classes - 1}): "
                         "give out_head one output per class, or check the labels.")


def calc_accuracy_loader(data_loader, model, device, num_batches=None, *, token_index: int = -1) -> float:
    """The share of texts whose predicted class (the largest logit at `token_index`) is the label,
    over the first `num_batches` batches (all by default)."""
    if len(data_loader) == 0:
        raise ValueError("the data loader has no batches: use more texts, a smaller batch_size, or drop_last=False.")
    was_training = model.training
    model.eval()
    correct_predictions, num_examples = 0, 0
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        input_batch, target_batch = input_batch.to(device), target_batch.to(device)
        with torch.no_grad():
            logits = model(input_batch)[:, token_index, :]  # logits of one position
        predicted_labels = torch.argmax(logits, dim=-1)
        num_examples += predicted_labels.shape[0]
        correct_predictions += (predicted_labels == target_batch).sum().item()
    model.train(was_training)
    return correct_predictions / num_examples


def calc_loss_batch(input_batch, target_batch, model, device, *, token_index: int = -1) -> torch.Tensor:
    """Cross-entropy of the class logits at `token_index` (the last token by default) against the labels."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)[:, token_index, :]  # (batch, num_classes)
    _check_targets(target_batch, logits.shape[-1])
    return F.cross_entropy(logits, target_batch)


def calc_loss_loader(data_loader, model, device, num_batches=None, *, token_index: int = -1) -> float:
    """The average of the per-batch losses over the first `num_batches` batches (all by default)."""
    if len(data_loader) == 0:
        raise ValueError("the data loader has no batches: use more texts, a smaller batch_size, or drop_last=False.")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total_loss = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total_loss += calc_loss_batch(input_batch, target_batch, model, device, token_index=token_index).item()
    return total_loss / num_batches


# -- 6.7 finetuning -----------------------------------------------------------------------------------------


def evaluate_model(model, train_loader, val_loader, device, eval_iter, *, token_index: int = -1) -> tuple[float, float]:
    """Training and validation loss over `eval_iter` batches each, in eval mode (no dropout)."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter, token_index=token_index)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter, token_index=token_index)
    model.train()
    return train_loss, val_loss


def train_classifier_simple(model, train_loader, val_loader, optimizer, device, num_epochs, eval_freq, eval_iter,
                            *, token_index: int = -1):
    """The book's loop: like chapter 5's, with the classification loss, and accuracies after each epoch.

    Returns the training and validation losses (every `eval_freq` steps), the training and validation
    accuracies (every epoch, over `eval_iter` batches) and the number of training examples seen.
    """
    train_losses, val_losses, train_accs, val_accs = [], [], [], []
    examples_seen, global_step = 0, -1

    for epoch in range(num_epochs):
        model.train()  # dropout on
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # clear the previous step's gradients
            loss = calc_loss_batch(input_batch, target_batch, model, device, token_index=token_index)
            loss.backward()  # gradients of the loss
            optimizer.step()  # update the weights
            examples_seen += input_batch.shape[0]  # count texts, not tokens
            global_step += 1

            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter,
                                                      token_index=token_index)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")

        train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=eval_iter,
                                              token_index=token_index)
        val_accuracy = calc_accuracy_loader(val_loader, model, device, num_batches=eval_iter, token_index=token_index)
        print(f"Training accuracy: {train_accuracy * 100:.2f}% | Validation accuracy: {val_accuracy * 100:.2f}%")
        train_accs.append(train_accuracy)
        val_accs.append(val_accuracy)

    return train_losses, val_losses, train_accs, val_accs, examples_seen


def plot_values(epochs_seen, examples_seen, train_values, val_values, label="loss"):
    """Training and validation values (loss or accuracy) against epochs, with examples seen on a second
    x-axis; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(epochs_seen, train_values, label=f"Training {label}")
    ax1.plot(epochs_seen, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend()
    ax2 = ax1.twiny()  # a second x-axis that shares the y-axis
    ax2.plot(examples_seen, train_values, alpha=0)  # invisible: only aligns the tick marks
    ax2.set_xlabel("Examples seen")
    fig.tight_layout()
    return fig


# -- 6.8 using the model as a classifier -------------------------------------------------------------------


def classify_text(text: str, model, tokenizer, device, max_length: int | None = None, pad_token_id: int | None = None,
                  class_names: Sequence[str] | None = None, *, token_index: int = -1) -> int | str:
    """The class the finetuned model gives `text`: its index, or its name if `class_names` are given.

    Pass the `max_length` the model was trained with, so the text is padded (or truncated) as the
    training texts were. A text longer than the model's context, or a `max_length` beyond it, is an
    error. The pad id defaults to the tokenizer's `<|endoftext|>`.
    """
    input_ids = tokenizer.encode(text)
    supported_context_length = model.pos_emb.weight.shape[0]
    if not input_ids:
        raise ValueError("the text is empty: there is nothing to classify.")
    if max_length is None:
        if len(input_ids) > supported_context_length:
            raise ValueError(f"the text has {len(input_ids)} tokens, more than the model's context of "
                             f"{supported_context_length}: shorten it, or pass the max_length the model was "
                             "trained with to truncate it as the training texts were.")
        max_length = len(input_ids)
    elif not 1 <= max_length <= supported_context_length:
        raise ValueError(f"max_length={max_length}, but the model reads at most {supported_context_length} tokens: "
                         "use the max_length of the training dataset (train_dataset.max_length).")
    pad_token_id = _pad_id(tokenizer, pad_token_id)
    input_ids = input_ids[:max_length]  # truncate, as the dataset does
    input_ids += [pad_token_id] * (max_length - len(input_ids))  # pad, as the dataset does
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)  # add the batch dimension

    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_tensor)[:, token_index, :]
    model.train(was_training)
    predicted_label = torch.argmax(logits, dim=-1).item()
    return predicted_label if class_names is None else class_names[predicted_label]


# -- 6.2 the book's dataset, for readers who are online: the SMS Spam Collection ------------------------------

SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SPAM_FILE_IN_ZIP = "SMSSpamCollection"
# What the collection's authors and the UCI page document: one message per line, 5,574 lines, 4,827 ham and
# 747 spam. No SHA-256 of the zip is published, so by default these counts are what is checked; a caller who
# has hashed a copy they trust can pin it with `sha256=`.
SPAM_LABEL_COUNTS = {"ham": 4_827, "spam": 747}
SPAM_DIR = Path(DEFAULT_CACHE_DIR) / "sms_spam_collection"


def download_and_unzip_spam_data(url: str = SPAM_URL, zip_path: str | os.PathLike | None = None,
                                 extracted_path: str | os.PathLike | None = None,
                                 data_file_path: str | os.PathLike | None = None, *,
                                 sha256: str | None = None, progress: bool = True) -> Path:
    """Download the SMS Spam Collection once, unzip it, and return the path of its tab-separated file.

    The paths default to a folder of the user cache (`SPAM_DIR`, outside the repository). A data file
    already there that passes the check is used as is. Otherwise the zip is downloaded into a `.part`
    file and checked (its SHA-256 if `sha256` is given; that it opens, holds `SMSSpamCollection`, and
    that file has 4,827 ham and 747 spam lines) before anything gets its final name: a download that
    fails is deleted, and the data file is written atomically, so no half-written file is ever left.
    """
    extracted_path = SPAM_DIR if extracted_path is None else Path(extracted_path)
    zip_path = extracted_path / "sms_spam_collection.zip" if zip_path is None else Path(zip_path)
    data_file_path = extracted_path / "SMSSpamCollection.tsv" if data_file_path is None else Path(data_file_path)

    if data_file_path.exists():
        try:
            check_spam_collection(data_file_path.read_bytes(), str(data_file_path))
            print(f"{data_file_path} already exists. Skipping download and extraction.")
            return data_file_path
        except ValueError as err:
            print(f"{err} Deleting it and downloading the collection again.")
            data_file_path.unlink()

    if zip_path.exists():  # a zip from an earlier call, or one downloaded by hand
        try:
            data = _spam_file_from_zip(zip_path, sha256)
        except ValueError as err:
            zip_path.unlink()
            raise ValueError(f"{err} It was deleted: run again to download it afresh.") from err
    else:
        try:  # checked (hash, zip, counts) as zip_path.part, and only then renamed to zip_path
            download(url, zip_path, sha256=sha256, progress=progress, label="SMS Spam Collection",
                     verify=_spam_file_from_zip, resume=False)  # about 200 kB: start afresh rather than resume
        except ConnectionError as err:
            detail = err.__cause__ if err.__cause__ is not None else err
            raise ConnectionError(
                f"could not download {url} ({detail}). If you are offline, save the zip by hand as {zip_path} and "
                "run this again; chapter 6's own task needs no download."
            ) from err
        data = _spam_file_from_zip(zip_path)

    atomic_write_bytes(data_file_path, data)  # the final name only ever holds the whole, checked file
    return data_file_path


def _spam_file_from_zip(path: Path, sha256: str | None = None) -> bytes:
    """The bytes of SMSSpamCollection inside the zip at `path`, checked; a ValueError says what is wrong."""
    if sha256 is not None:
        check_sha256(path, sha256, str(path), fix="it is not the zip whose hash was pinned with sha256=.")
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(SPAM_FILE_IN_ZIP)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is not the SMS Spam Collection: it is not a zip file ({err}).") from err
    except KeyError as err:
        raise ValueError(f"{path} is not the SMS Spam Collection: it has no file {SPAM_FILE_IN_ZIP!r}.") from err
    check_spam_collection(data, f"{SPAM_FILE_IN_ZIP} in {path}")
    return data


def check_spam_collection(data: bytes, source: str) -> None:
    """Raise a ValueError unless `data` has the documented shape: a label, a tab and a message on each line,
    4,827 lines labelled ham and 747 spam (5,574 in all)."""
    lines = data.rstrip(b"\n").split(b"\n")
    labels = [line.split(b"\t", 1)[0].decode("ascii", errors="replace") for line in lines]
    counts = {label: labels.count(label) for label in SPAM_LABEL_COUNTS}
    others = [label for label in labels if label not in SPAM_LABEL_COUNTS]
    if others or counts != SPAM_LABEL_COUNTS:
        found = f"{len(lines)} lines, {counts['ham']} ham and {counts['spam']} spam"
        found += f", and {len(others)} with another label (first: {others[0][:20]!r})" if others else ""
        raise ValueError(f"{source} has {found}; the SMS Spam Collection has 5,574 lines, 4,827 ham and 747 spam.")


def load_spam_data(data_file_path: str | os.PathLike) -> pd.DataFrame:
    """The SMS Spam Collection as a DataFrame with the book's columns Label ("ham" or "spam") and Text.

    Quotes are read as ordinary characters (`csv.QUOTE_NONE`), so every line is one message: 5,574 of
    them, 4,827 ham and 747 spam, as its authors count. (The book's `read_csv` call treats quotes as
    delimiters and merges a few lines, which gives 5,572 rows and 4,825 ham.)
    """
    df = pd.read_csv(data_file_path, sep="\t", header=None, names=["Label", "Text"], quoting=csv.QUOTE_NONE,
                     dtype=str, keep_default_na=False)
    bad = df[~df["Label"].isin(["ham", "spam"])]
    if len(bad):
        raise ValueError(f"{data_file_path}: line {bad.index[0] + 1} has the label {bad['Label'].iloc[0]!r}; every "
                         "line should be 'ham' or 'spam', a tab, and the message. Is this the SMS Spam Collection?")
    return df
