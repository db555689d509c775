"""Training checkpoints in one safetensors file: weights, optimizer state, step, RNG states and config.

Everything needed to resume training exactly lives in a single file. Tensors (weights, AdamW's
moments, the random generators' states) are stored as safetensors; the rest (config, step,
optimizer hyperparameters, anything the caller adds) as JSON in the file's metadata. Nothing is
unpickled on load, so a checkpoint from an untrusted source cannot run code. Files are written to a
temporary name and renamed, so an interrupted save never leaves a half-written checkpoint. Tied
weights (one tensor under two names, e.g. an output head that is the token embedding) are stored
once and come back as one tensor under both names.

Two guards keep a checkpoint trustworthy: `save_checkpoint` refuses weights or optimizer state that
hold NaN or infinity (so a diverged run never replaces good work), and every file carries a
SHA-256 of its tensors that `read_checkpoint` verifies (so a flipped bit is an error, not silently
wrong weights). Files written before the hash existed still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from shared.files import atomic_path

FORMAT = "llm-from-scratch-checkpoint"
VERSION = 1


class NonFiniteError(ValueError):
    """Tensors hold NaN or infinity: a diverged run, or a corrupt file."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` read: the step, the model config and the caller's extra JSON data."""

    step: int
    config: dict
    extra: dict = field(default_factory=dict)


# -- saving ------------------------------------------------------------------------------------------


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split the optimizer's state dict into tensors (by "optimizer.<param>.<name>") and JSON data."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, state in state_dict["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _rng_states() -> tuple[dict[str, torch.Tensor], list]:
    """The torch generators' states as tensors, and Python's `random` state as JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    version, internal, gauss = random.getstate()
    return tensors, [version, list(internal), gauss]


def _plain(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """CPU, contiguous tensors that share no memory (safetensors refuses shared ones), each stored once.

    A tensor that is exactly another's view (tied weights: GPT-2's head and token embedding with
    `tie_embeddings`) is not stored again: it becomes an alias, {its name: the stored name}, which
    `read_checkpoint` turns back into one tensor under both names. Other overlaps are copied.
    """
    views: dict[tuple, str] = {}
    storages: set[tuple] = set()
    out, aliases = {}, {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        if tensor.numel():  # empty tensors all have address 0: never aliases
            storage = (tensor.device, tensor.untyped_storage().data_ptr())
            view = (*storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
            if view in views:
                aliases[name] = views[view]
                continue
            views[view] = name
            shared = storage in storages
            storages.add(storage)
        else:
            shared = False
        plain = tensor.cpu().contiguous()
        out[name] = plain.clone() if shared else plain  # a view of memory already stored: a copy
    return out, aliases


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """One SHA-256 over every tensor's name, dtype, shape and bytes, in name order: what a checkpoint's
    integrity check compares."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors that hold NaN or infinity."""
    return [name for name, tensor in tensors.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    *, step: int = 0, config: dict | None = None, extra: dict | None = None) -> Path:
    """Write model (and optimizer) state, `step`, RNG states, `config` and `extra` to `path`, atomically.

    `config` defaults to `model.cfg` (GPTModel keeps its config there); `extra` is any JSON-able dict,
    e.g. the training command's settings or the tokenizer. Weights or optimizer state holding NaN or
    infinity raise `NonFiniteError` and leave any file at `path` as it was.
    """
    path = Path(path)
    config = dict(config if config is not None else getattr(model, "cfg", {}))
    tensors = {f"model.{name}": tensor for name, tensor in model.state_dict().items()}
    metadata = {"format": FORMAT, "version": str(VERSION), "step": str(step), "config": json.dumps(config),
                "extra": json.dumps(extra or {})}
    if optimizer is not None:
        optimizer_tensors, optimizer_json = _optimizer_tensors(optimizer)
        tensors.update(optimizer_tensors)
        metadata["optimizer"] = json.dumps(optimizer_json)
    bad = non_finite_tensors(tensors)
    if bad:
        raise NonFiniteError(f"refusing to save step {step} to {path}: {len(bad)} tensor(s) hold NaN or infinity "
                             f"(e.g. {', '.join(bad[:3])}). The run diverged; "
                             + ("the previous checkpoint there is kept." if path.exists() else "nothing was written."))
    rng_tensors, python_rng = _rng_states()
    tensors.update(rng_tensors)
    metadata["python_rng"] = json.dumps(python_rng)

    return _write_atomically(path, tensors, metadata)


def export_weights(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Copy a checkpoint without its optimizer and RNG state: the weights (cast to `dtype` if given),
    config, step and extra data. A third of the size, for sharing a model rather than resuming it."""
    tensors, metadata = read_checkpoint(src)
    cast: dict[int, torch.Tensor] = {}  # by tensor: tied weights (one tensor, two names) stay one tensor
    for t in tensors.values():
        if id(t) not in cast:
            cast[id(t)] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    weights = {key: cast[id(t)] for key, t in tensors.items() if key.startswith("model.")}
    kept = {key: metadata[key] for key in ("format", "version", "step", "config", "extra")}
    return _write_atomically(Path(dst), weights, kept)


def _write_atomically(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """safetensors to a temporary name, flushed to disk, then renamed: never a half-written file.
    The tensors' SHA-256 goes into the metadata, for `read_checkpoint` to verify."""
    tensors, aliases = _plain(tensors)
    metadata = {**metadata, "tensors_sha256": tensors_sha256(tensors)}
    if aliases:
        metadata["aliases"] = json.dumps(aliases)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


# -- loading -----------------------------------------------------------------------------------------


# The config keys that decide the shapes of the weights (drop_rate or use_sdpa may differ freely).
ARCHITECTURE_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "qkv_bias")


def _config_mismatch(saved: dict, model_config: dict) -> list[str]:
    """'key: checkpoint X, model Y' for each architecture key on which the two configs differ, and for an untied
    checkpoint (two matrices) read into a tied model (one: the head's would overwrite the embedding)."""
    mismatch = [f"{key}: checkpoint {saved.get(key, '(missing)')!r}, model {model_config.get(key, '(missing)')!r}"
                for key in ARCHITECTURE_KEYS if saved.get(key) != model_config.get(key)]
    if model_config.get("tie_embeddings", False) and not saved.get("tie_embeddings", False):
        mismatch.append("tie_embeddings: checkpoint False (a head of its own), model True (the head is the embedding)")
    return mismatch


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a checkpoint file, with a clear error for anything else.

    A tensor stored once for two names (tied weights) is returned under both, as one tensor."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({err}); it may be truncated "
                         "or corrupt. Use another checkpoint.") from err
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a training checkpoint of this project "
                         "(for GPT-2's model.safetensors use shared.weights.load_gpt2_safetensors).")
    if metadata.get("version") != str(VERSION):
        raise ValueError(f"{path} has checkpoint version {metadata.get('version')}; this code reads version "
                         f"{VERSION}.")
    expected = metadata.get("tensors_sha256")  # absent in files written before the check existed
    if expected is not None and tensors_sha256(tensors) != expected:
        raise ValueError(f"{path} is corrupt: its tensors do not match the SHA-256 saved with them (a changed or "
                         "damaged file). Use another checkpoint, e.g. an earlier copy.")
    missing = [key for key in ("config", "step", "extra") if key not in metadata]
    if missing:
        raise ValueError(f"{path} lacks the metadata {', '.join(missing)}: it was not written by save_checkpoint.")
    for name, stored in json.loads(metadata.get("aliases", "{}")).items():  # tied weights, stored once
        if stored not in tensors:
            raise ValueError(f"{path} is corrupt: its tensor {name!r} is an alias of {stored!r}, which the file "
                             "lacks. Use another checkpoint.")
        tensors[name] = tensors[stored]
    return tensors, metadata


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, *, restore_rng: bool = False) -> Checkpoint:
    """Read a checkpoint into `model` (and `optimizer`), returning its step, config and extra data.

    A model whose config differs from the saved one is refused with the differing keys named.
    `restore_rng=True` also restores the random generators, so resumed training draws the same
    dropout masks as an uninterrupted run would have.
    """
    tensors, metadata = read_checkpoint(path)
    config = json.loads(metadata["config"])
    bad = non_finite_tensors({k: t for k, t in tensors.items() if k.startswith(("model.", "optimizer."))})
    if bad and (model is not None or optimizer is not None):
        raise NonFiniteError(f"{path} holds NaN or infinity in {len(bad)} tensor(s) (e.g. {', '.join(bad[:3])}): "
                             "it was saved from a diverged run or is corrupt. Use an earlier checkpoint.")
    if model is not None:
        model_config = getattr(model, "cfg", None)
        if model_config is not None and _config_mismatch(config, dict(model_config)):
            raise ValueError(f"{path} was saved from a model with another config:\n  "
                             + "\n  ".join(_config_mismatch(config, dict(model_config)))
                             + "\nBuild the model with the checkpoint's config (its .config), then load.")
        weights = {key[len("model."):]: t for key, t in tensors.items() if key.startswith("model.")}
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as err:  # names or shapes that do not fit, though the config matched
            detail = " ".join(str(err).split())[:300]
            raise ValueError(f"{path}'s tensors do not fit a model of its own config ({detail}): the file is "
                             "corrupt or was edited. Use another checkpoint.") from None
    if optimizer is not None:
        if "optimizer" not in metadata:
            raise ValueError(f"{path} holds no optimizer state (it was saved without an optimizer).")
        optimizer_json = json.loads(metadata["optimizer"])
        state: dict[int, dict] = {}
        for key, tensor in tensors.items():
            if key.startswith("optimizer."):
                _, param_id, name = key.split(".", 2)
                state.setdefault(int(param_id), {})[name] = tensor
        for param_id, scalars in optimizer_json["scalars"].items():
            state.setdefault(int(param_id), {}).update(scalars)
        # JSON turned tuples such as AdamW's betas into lists: turn them back.
        groups = [{key: tuple(value) if isinstance(value, list) and key != "params" else value
                   for key, value in group.items()} for group in optimizer_json["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    if restore_rng:
        torch.set_rng_state(tensors["rng.torch"])
        cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
        cuda_states = [tensors[key] for key in cuda_keys]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
        version, internal, gauss = json.loads(metadata["python_rng"])
        random.setstate((version, tuple(internal), gauss))
    return Checkpoint(step=int(metadata["step"]), config=config, extra=json.loads(metadata["extra"]))
