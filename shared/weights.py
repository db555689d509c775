"""Chapter 5's pretrained weights: GPT-2's parameters, in Hugging Face's layout, loaded into `GPTModel`.

OpenAI released GPT-2 in four sizes; Hugging Face hosts each as one `model.safetensors` file. This
module maps those tensors onto the book's `GPTModel` (`load_weights_into_gpt`), reads the file
without pickle (`load_gpt2_safetensors`) and, for readers who are online, downloads it once into a
cache (`download_gpt2_weights`). Nothing here downloads anything unless you call that function.

Two details of the Hugging Face layout matter for the mapping:

- GPT-2's linear layers are `Conv1D` modules whose weight is stored as (in_features, out_features),
  the transpose of `nn.Linear`'s (out_features, in_features).
- The query, key and value projections are one fused `c_attn` layer: its outputs are q, k and v
  side by side, so its weight is split into three along the output dimension.

The output head is tied to the token embedding in GPT-2 (the same matrix), so the checkpoint may
have no `lm_head.weight`; the token embedding is then copied into `out_head` as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from shared.files import atomic_write_text, check_sha256, download
from shared.transformer import GPT2_CONFIGS, GPTModel

GPT2_URL = "https://huggingface.co/openai-community/{name}/resolve/{revision}/model.safetensors"


@dataclass(frozen=True)
class GPT2Checkpoint:
    """Where one GPT-2 size lives on the Hugging Face hub, and what its file must be.

    The URL names a commit of the hub repository rather than `main`, so the bytes behind it cannot
    change; `sha256` and `size` (bytes), where known, are those of that commit's `model.safetensors`.
    Without them a download is still checked, by comparing every tensor's shape with the model's.
    """

    name: str  # the repository name, also the key of GPT2_CONFIGS
    url: str
    sha256: str | None = None
    size: int | None = None
    revision: str | None = None  # the hub commit the URL points at


# name: (revision, sha256 of model.safetensors, its size in bytes). Written offline, so taken from
# values that unrelated public projects agree on (found by searching public GitHub code), not from the
# hub itself:
# - gpt2: the sha256 and the size 548,105,171 at revision 607a30d7 appear together in several
#   projects that pin their assets and re-hash the file (a pinned-fetch script that lists the
#   repository's files by git blob id, an interpretability study's asset contract, ...), and the
#   sha256 is the blob name of model.safetensors in a listing of a Hugging Face cache of gpt2 at 607a30d7.
# - gpt2-xl: the sha256 at revision 15ea56de appears in two unrelated projects: a local GPT-2 XL
#   runner whose verification record says the file matched the hub's metadata, and a knowledge-editing
#   study that re-hashes its cached checkpoint. Its exact size was not found: left None.
# - gpt2-medium, gpt2-large: the revisions (6dcaa7a9, 32b71b12) are pinned by many projects, but no
#   published hash of their model.safetensors was found: sha256 and size are None, and a download of
#   either is checked by its tensor shapes only. Pass `sha256=` to add a hash you trust.
_PINNED = {
    "gpt2": ("607a30d783dfa663caf39e06633721c8d4cfcd7e",
             "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707", 548_105_171),
    "gpt2-medium": ("6dcaa7a952f72f9298047fd5137cd6e4f05f41da", None, None),
    "gpt2-large": ("32b71b12589c2f8d625668d2335a01cac3249519", None, None),
    "gpt2-xl": ("15ea56dee5df4983c59b2538573817e1667135e2",
                "0f8b28eb05a8075f48b61b6f35332978c74fc7763fa9fb4051a1c30511736a6a", None),
}
GPT2_SAFETENSORS: dict[str, GPT2Checkpoint] = {
    name: GPT2Checkpoint(name, GPT2_URL.format(name=name, revision=revision), sha256, size, revision)
    for name, (revision, sha256, size) in _PINNED.items()
}

# Where download_gpt2_weights keeps the files unless told otherwise; set LLM_FROM_SCRATCH_CACHE to move it.
DEFAULT_CACHE_DIR = Path(os.environ.get("LLM_FROM_SCRATCH_CACHE", Path.home() / ".cache" / "llm-from-scratch"))

# Non-parameter buffers that older GPT-2 checkpoints saved (the causal mask and a constant): skipped.
_BUFFER_KEY = re.compile(r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$")


def gpt2_config(name: str) -> dict:
    """The `GPTModel` config for a Hugging Face GPT-2 checkpoint name ("gpt2", "gpt2-medium", ...).

    GPT-2 has biases in its query, key and value projections, so `qkv_bias` is True; the context is
    GPT-2's 1024 tokens; dropout is 0, since a loaded model is mostly used for inference.
    """
    if name not in GPT2_CONFIGS:
        raise KeyError(f"unknown GPT-2 size {name!r}; choose one of {sorted(GPT2_CONFIGS)}.")
    return {**GPT2_CONFIGS[name], "context_length": 1024, "drop_rate": 0.0, "qkv_bias": True}


# ---------------------------------------------------------------------------------------------
# The mapping from Hugging Face's names to GPTModel's parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where one Hugging Face tensor goes in GPTModel.

    `params` are the destination parameters; several (q, k, v) mean the tensor is split among them
    along the output dimension. `conv1d` marks a tensor of a Conv1D layer, whose weight is stored
    transposed (a bias is the same in both layouts).
    """

    params: tuple[torch.nn.Parameter, ...]
    conv1d: bool = False

    @property
    def hf_shape(self) -> tuple[int, ...]:
        """The shape this tensor has in a Hugging Face checkpoint."""
        out_features = sum(p.shape[0] for p in self.params)
        if self.params[0].ndim == 2 and self.conv1d:
            return (self.params[0].shape[1], out_features)  # (in, out): nn.Linear's transposed
        return (out_features, *self.params[0].shape[1:])

    def split(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Cut a checkpoint tensor into pieces in the layout of `params`."""
        if tensor.ndim == 2 and self.conv1d:
            tensor = tensor.T
        return list(tensor.split([p.shape[0] for p in self.params], dim=0))

    def join(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        """The inverse of `split`: tensors in the layout of `params` (e.g. their gradients) as one
        tensor in the checkpoint's layout."""
        tensor = torch.cat(pieces, dim=0)
        return tensor.T if tensor.ndim == 2 and self.conv1d else tensor


def gpt2_parameter_map(gpt: GPTModel) -> dict[str, Target]:
    """For each tensor name of GPT-2 in Hugging Face's layout (without the `transformer.` prefix),
    the GPTModel parameters it fills. `lm_head.weight` maps to `out_head` and is optional."""
    mapping = {
        "wte.weight": Target((gpt.tok_emb.weight,)),
        "wpe.weight": Target((gpt.pos_emb.weight,)),
        "ln_f.weight": Target((gpt.final_norm.scale,)),
        "ln_f.bias": Target((gpt.final_norm.shift,)),
        "lm_head.weight": Target((gpt.out_head.weight,)),
    }
    for i, block in enumerate(gpt.trf_blocks):
        att, ff, h = block.att, block.ff, f"h.{i}."
        qkv = (att.W_query, att.W_key, att.W_value)
        mapping.update({
            h + "ln_1.weight": Target((block.norm1.scale,)),
            h + "ln_1.bias": Target((block.norm1.shift,)),
            h + "attn.c_attn.weight": Target(tuple(linear.weight for linear in qkv), conv1d=True),
            h + "attn.c_proj.weight": Target((att.out_proj.weight,), conv1d=True),
            h + "attn.c_proj.bias": Target((att.out_proj.bias,), conv1d=True),
            h + "ln_2.weight": Target((block.norm2.scale,)),
            h + "ln_2.bias": Target((block.norm2.shift,)),
            h + "mlp.c_fc.weight": Target((ff.layers[0].weight,), conv1d=True),
            h + "mlp.c_fc.bias": Target((ff.layers[0].bias,), conv1d=True),
            h + "mlp.c_proj.weight": Target((ff.layers[2].weight,), conv1d=True),
            h + "mlp.c_proj.bias": Target((ff.layers[2].bias,), conv1d=True),
        })
        if att.W_query.bias is not None:  # built with qkv_bias=True, as GPT-2 is
            mapping[h + "attn.c_attn.bias"] = Target(tuple(linear.bias for linear in qkv), conv1d=True)
    return mapping


def _hf_name(key: str) -> str:
    """A checkpoint key without GPT2LMHeadModel's `transformer.` prefix (GPT2Model has none)."""
    return key.removeprefix("transformer.")


def _listing(keys: list[str], limit: int = 6) -> str:
    """At most `limit` keys, then how many more: enough to see the pattern without a wall of text."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _config_of_checkpoint(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """What the tensor shapes reveal of a checkpoint's config (the number of heads they cannot)."""
    found = {}
    if "wte.weight" in shapes and len(shapes["wte.weight"]) == 2:
        found["vocab_size"], found["emb_dim"] = shapes["wte.weight"]
    if "wpe.weight" in shapes and len(shapes["wpe.weight"]) == 2:
        found["context_length"] = shapes["wpe.weight"][0]
    layers = {int(m.group(1)) for key in shapes if (m := re.match(r"h\.(\d+)\.", key))}
    if layers:
        found["n_layers"] = max(layers) + 1
    return found


def check_gpt2_shapes(gpt: GPTModel, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise a ValueError naming every problem if tensors of these shapes cannot fill `gpt`.

    `shapes` maps checkpoint keys (with or without the `transformer.` prefix) to tensor shapes.
    The whole check happens before anything is copied, so a failed load leaves `gpt` untouched.
    """
    mapping = gpt2_parameter_map(gpt)
    found = {_hf_name(key): (key, tuple(shape)) for key, shape in shapes.items() if not _BUFFER_KEY.search(key)}
    checkpoint_has_qkv_bias = any(name.endswith("attn.c_attn.bias") for name in found)
    model_has_qkv_bias = gpt.trf_blocks[0].att.W_query.bias is not None
    if checkpoint_has_qkv_bias and not model_has_qkv_bias:
        raise ValueError(
            "the checkpoint has query/key/value biases (attn.c_attn.bias) but this GPTModel was built with "
            "qkv_bias=False, so it has nowhere to put them. GPT-2 has these biases: build the model with "
            "cfg['qkv_bias'] = True (gpt2_config(name) does)."
        )

    problems = []
    for name, (key, shape) in found.items():
        expected = mapping[name].hf_shape if name in mapping else shape
        if shape != expected:
            problems.append(f"{key} has shape {tuple(shape)} but this GPTModel expects {expected}")
    if len(problems) > 6:
        problems[6:] = [f"... and {len(problems) - 6} more tensors of the wrong shape"]
    prefix = "transformer." if any(key.startswith("transformer.") for key in shapes) else ""
    missing = [prefix + name for name in mapping if name not in found and name != "lm_head.weight"]
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if model_has_qkv_bias and not checkpoint_has_qkv_bias and any(n.endswith("attn.c_attn.weight") for n in found):
        problems.append("the checkpoint has no query/key/value biases (attn.c_attn.bias) but this GPTModel was "
                        "built with qkv_bias=True: build it with cfg['qkv_bias'] = False for this checkpoint")
    unexpected = [key for name, (key, _) in found.items() if name not in mapping]
    if unexpected:
        problems.append(f"unexpected keys (this GPTModel has no place for them): {_listing(unexpected)}")
    if not problems:
        return

    theirs = _config_of_checkpoint({name: shape for name, (_, shape) in found.items()})
    ours = {key: gpt.cfg[key] for key in ("vocab_size", "emb_dim", "context_length", "n_layers")}
    differ = [f"{key} {theirs[key]} vs {ours[key]}" for key in ours if key in theirs and theirs[key] != ours[key]]
    if differ:
        hint = f"The checkpoint is for a different config ({', '.join(differ)} in this GPTModel): "
        sizes = [name for name, cfg in GPT2_CONFIGS.items()
                 if (cfg["emb_dim"], cfg["n_layers"]) == (theirs.get("emb_dim"), theirs.get("n_layers"))]
        hint += (f"it looks like {sizes[0]!r}, so build GPTModel(gpt2_config({sizes[0]!r}))." if sizes
                 else "build the GPTModel with the checkpoint's sizes.")
    else:
        hint = "Expected GPT-2 weights in Hugging Face's layout (keys like transformer.h.0.attn.c_attn.weight)."
    raise ValueError("cannot load these weights into this GPTModel:\n  - " + "\n  - ".join(problems) + "\n" + hint)


def load_weights_into_gpt(gpt: GPTModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy GPT-2 weights in Hugging Face's layout into `gpt`'s parameters, in place.

    `state_dict` may come from `GPT2LMHeadModel` (keys start with `transformer.`), from `GPT2Model`
    (no prefix) or from a `model.safetensors` file. Without `lm_head.weight` the output head gets the
    token embedding (GPT-2 ties the two). The parameters keep their dtype and device. Nothing is
    copied unless every tensor fits: otherwise a ValueError names the keys and shapes at fault.
    """
    check_gpt2_shapes(gpt, {key: tuple(tensor.shape) for key, tensor in state_dict.items()})
    tensors = {_hf_name(key): tensor for key, tensor in state_dict.items() if not _BUFFER_KEY.search(key)}
    tensors.setdefault("lm_head.weight", tensors["wte.weight"])  # tied in GPT-2: the head is the embedding
    with torch.no_grad():
        for name, target in gpt2_parameter_map(gpt).items():
            for param, piece in zip(target.params, target.split(tensors[name]), strict=True):
                param.copy_(piece)  # copy_ converts to the parameter's dtype and device


# ---------------------------------------------------------------------------------------------
# Reading and downloading model.safetensors
# ---------------------------------------------------------------------------------------------


def load_gpt2_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a `model.safetensors` file (or a folder holding one) into a dict of CPU tensors.

    safetensors stores raw tensors and a JSON header, so unlike a pickled `.bin`/`.pt` file,
    reading it cannot run code.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}; see download_gpt2_weights() to fetch one.")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}): it is truncated, corrupt or another "
                         "kind of file. Download it again (download_gpt2_weights deletes a bad copy).") from None


def safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, read from its header alone (no tensor data)."""
    with safe_open(path, framework="pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def verify_gpt2_file(path: Path, name: str, sha256: str | None = None, size: int | None = None) -> None:
    """Raise a ValueError unless `path` is a safetensors file that fits GPT-2 size `name` and, where
    given, has `size` bytes and the SHA-256 `sha256`. The size and the tensor shapes (read from the
    header) are cheap to check, so they come first; the hash reads the whole file."""
    if size is not None and (actual_size := path.stat().st_size) != size:
        raise ValueError(f"{path} has {actual_size:,} bytes, not the expected {size:,}.")
    try:
        shapes = safetensors_shapes(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}).") from err
    with torch.device("meta"):  # a model without memory, just to know the expected shapes
        gpt = GPTModel(gpt2_config(name))
    check_gpt2_shapes(gpt, shapes)
    if sha256 is not None:
        check_sha256(path, sha256, str(path), fix="it is corrupt, incomplete or another file.")


def _fingerprint(path: Path, sha256: str) -> str:
    """What `path` was when its hash was found to be `sha256`: the hash, the size and the modification time."""
    stat = path.stat()
    return f"{sha256.lower()} {stat.st_size} {stat.st_mtime_ns}\n"


def download_gpt2_weights(name: str, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, *,
                          sha256: str | None = None, progress: bool = True) -> Path:
    """Download GPT-2 size `name`'s `model.safetensors` once and return its path in the cache.

    - Pinned: the URL names one commit of the hub repository, and the file must have the SHA-256 and
      size recorded in `GPT2_SAFETENSORS` where they are known (`sha256=` overrides the hash).
    - Cached: a file already in `cache_dir/name/` that passes the checks is used as is. Its hash is
      computed once: `model.safetensors.verified` remembers it, with the file's size and modification
      time, so later calls skip re-reading gigabytes unless the file changed.
    - Resumable: bytes arrive in `model.safetensors.part`; if that file exists from an interrupted
      run, only the rest is requested (an HTTP Range request).
    - Checked, then atomic: the finished `.part` is verified (size and SHA-256 if known, and the
      tensor shapes of its header) and only then renamed into place with `os.replace`, so the cache
      never holds a half-written or corrupt `model.safetensors`. A corrupt download is deleted.
    """
    if name not in GPT2_SAFETENSORS:
        raise KeyError(f"unknown GPT-2 size {name!r}; choose one of {sorted(GPT2_SAFETENSORS)}.")
    checkpoint = GPT2_SAFETENSORS[name]
    sha256 = sha256 or checkpoint.sha256
    folder = Path(cache_dir) / name
    target, verified = folder / "model.safetensors", folder / "model.safetensors.verified"

    if target.exists():
        hashed = sha256 is not None and verified.exists() and verified.read_text() == _fingerprint(target, sha256)
        try:
            verify_gpt2_file(target, name, None if hashed else sha256, checkpoint.size)
        except ValueError as err:
            print(f"the cached {target} fails its check ({err}); downloading it again.")
            target.unlink()
            verified.unlink(missing_ok=True)
        else:
            if sha256 is not None and not hashed:
                atomic_write_text(verified, _fingerprint(target, sha256))
            return target

    download(checkpoint.url, target, sha256=sha256, size=checkpoint.size, progress=progress, label=name,
             verify=partial(verify_gpt2_file, name=name))  # the tensor shapes; download checks size and hash
    if sha256 is not None:
        atomic_write_text(verified, _fingerprint(target, sha256))
    return target
