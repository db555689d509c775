"""`shared/weights.py`: its error messages, the key prefixes it accepts, and the download helper.

The download tests never touch the network: `urllib.request.urlopen` is replaced by a fake server
that hands out the bytes of a small safetensors file written here, honouring HTTP Range requests.
They test what `download_gpt2_weights` adds (the cache, the pinned hashes, the tensor-shape check);
the download itself (resuming, restarts, dropped connections, network errors) is tested against a
real local server in `tests/test_files.py`. That GPTModel computes what GPT-2 computes is
`tests/test_gpt2_oracle.py`'s business.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from shared import files, weights
from shared.transformer import GPT2_CONFIGS, GPTModel
from shared.weights import (
    GPT2_SAFETENSORS,
    GPT2Checkpoint,
    download_gpt2_weights,
    gpt2_config,
    load_gpt2_safetensors,
    load_weights_into_gpt,
)

TINY = {"vocab_size": 61, "context_length": 1024, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": True}


def hf_config(cfg: dict) -> GPT2Config:
    return GPT2Config(vocab_size=cfg["vocab_size"], n_positions=cfg["context_length"], n_embd=cfg["emb_dim"],
                      n_layer=cfg["n_layers"], n_head=cfg["n_heads"], bos_token_id=None, eos_token_id=None)


def tiny_state_dict(cfg: dict = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of a random GPT2LMHeadModel (keys with the `transformer.` prefix)."""
    torch.manual_seed(seed)
    return {key: tensor.clone() for key, tensor in GPT2LMHeadModel(hf_config(cfg)).state_dict().items()}


def logits(gpt: GPTModel) -> torch.Tensor:
    with torch.no_grad():
        return gpt.eval()(torch.arange(10).reshape(2, 5))


def error_of(gpt: GPTModel, state_dict: dict[str, torch.Tensor]) -> str:
    with pytest.raises(ValueError) as info:
        load_weights_into_gpt(gpt, state_dict)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Loading: prefixes, the tied head, buffers, dtype
# ---------------------------------------------------------------------------------------------


def test_keys_with_and_without_the_transformer_prefix_load_the_same() -> None:
    torch.manual_seed(0)
    base = GPT2Model(hf_config(TINY))  # GPT2Model: keys without a prefix, and no lm_head
    assert not any(key.startswith("transformer.") for key in base.state_dict())
    with_prefix = {f"transformer.{key}": tensor for key, tensor in base.state_dict().items()}

    a, b = GPTModel(TINY), GPTModel(TINY)
    load_weights_into_gpt(a, base.state_dict())
    load_weights_into_gpt(b, with_prefix)
    torch.testing.assert_close(logits(a), logits(b), rtol=0, atol=0)
    torch.testing.assert_close(a.out_head.weight, base.wte.weight, rtol=0, atol=0)  # tied: the head is wte


def test_an_untied_lm_head_is_used_when_present() -> None:
    state_dict = tiny_state_dict()
    state_dict["lm_head.weight"] = torch.randn_like(state_dict["lm_head.weight"])
    gpt = GPTModel(TINY)
    load_weights_into_gpt(gpt, state_dict)
    torch.testing.assert_close(gpt.out_head.weight, state_dict["lm_head.weight"], rtol=0, atol=0)
    torch.testing.assert_close(gpt.tok_emb.weight, state_dict["transformer.wte.weight"], rtol=0, atol=0)


def test_old_checkpoints_mask_buffers_are_ignored() -> None:
    state_dict = tiny_state_dict()
    for i in range(TINY["n_layers"]):  # what pytorch_model.bin files of GPT-2 carry besides parameters
        state_dict[f"transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 1024, 1024).tril()
        state_dict[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    gpt = GPTModel(TINY)
    load_weights_into_gpt(gpt, state_dict)
    torch.testing.assert_close(gpt.trf_blocks[1].norm2.shift, state_dict["transformer.h.1.ln_2.bias"])


def test_the_model_keeps_its_dtype() -> None:
    half = {key: tensor.half() for key, tensor in tiny_state_dict().items()}
    gpt = GPTModel(TINY).to(torch.bfloat16)
    load_weights_into_gpt(gpt, half)
    assert {p.dtype for p in gpt.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(gpt.pos_emb.weight, half["transformer.wpe.weight"].to(torch.bfloat16))


def test_gpt2_config() -> None:
    cfg = gpt2_config("gpt2-medium")
    assert cfg["qkv_bias"] is True and cfg["context_length"] == 1024 and cfg["drop_rate"] == 0.0
    assert (cfg["emb_dim"], cfg["n_layers"], cfg["n_heads"]) == (1024, 24, 16)
    assert GPT2_CONFIGS["gpt2-medium"]["qkv_bias"] is False  # the book's training config is left alone
    with pytest.raises(KeyError, match="gpt2-xl"):
        gpt2_config("gpt3")


def test_the_download_table_pins_each_size_to_a_commit() -> None:
    assert sorted(GPT2_SAFETENSORS) == ["gpt2", "gpt2-large", "gpt2-medium", "gpt2-xl"]
    for name, checkpoint in GPT2_SAFETENSORS.items():
        assert checkpoint.name == name and re.fullmatch(r"[0-9a-f]{40}", checkpoint.revision)
        assert checkpoint.url == (f"https://huggingface.co/openai-community/{name}/resolve/"
                                  f"{checkpoint.revision}/model.safetensors")
        assert checkpoint.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", checkpoint.sha256)
        assert checkpoint.size is None or (isinstance(checkpoint.size, int) and checkpoint.size > 0)
    assert GPT2_SAFETENSORS["gpt2"].sha256 and GPT2_SAFETENSORS["gpt2-xl"].sha256  # the two hashes found


@pytest.mark.parametrize("name", [name for name, c in GPT2_SAFETENSORS.items() if c.size is not None])
def test_a_pinned_size_is_the_float32_tensors_plus_a_header(name: str) -> None:
    """The hub's files hold every parameter once (the head is tied) and each layer's causal-mask buffer
    of 1024 x 1024, all float32, after a JSON header of a few kB: a mistyped size would not fit."""
    cfg = gpt2_config(name)
    with torch.device("meta"):
        gpt = GPTModel(cfg)
    elements = sum(p.numel() for p in gpt.parameters()) - gpt.out_head.weight.numel() + cfg["n_layers"] * 1024 * 1024
    header = GPT2_SAFETENSORS[name].size - 4 * elements
    assert 1_000 < header < 100_000


# ---------------------------------------------------------------------------------------------
# Files written by transformers' save_pretrained, read back with load_gpt2_safetensors
# ---------------------------------------------------------------------------------------------

# (vocab_size, n_positions, n_embd, n_layer, n_head, tied output head): odd sizes, one and several heads
SAVED_CONFIGS = {
    "odd-tied": (97, 17, 48, 2, 3, True),
    "one-head-untied": (50, 9, 40, 2, 1, False),
    "wide-untied": (256, 32, 64, 3, 4, False),
    "one-layer-tied": (1000, 24, 96, 1, 6, True),
}


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """`model` with every parameter moved off its initial value (layer norms at 1, biases at 0 would
    hide a swapped tensor), in eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            base = 1.0 if ".ln_" in name and name.endswith("weight") else 0.0
            param.copy_(base + 0.1 * torch.randn_like(param))
    return model.eval()


def saved_config(name: str) -> tuple[GPT2Config, dict]:
    vocab, positions, embd, layers, heads, tied = SAVED_CONFIGS[name]
    cfg = {"vocab_size": vocab, "context_length": positions, "emb_dim": embd, "n_heads": heads, "n_layers": layers,
           "drop_rate": 0.0, "qkv_bias": True}
    config = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=embd, n_layer=layers, n_head=heads,
                        bos_token_id=None, eos_token_id=None, tie_word_embeddings=tied)
    return config, cfg


@pytest.mark.parametrize("name", list(SAVED_CONFIGS))
def test_save_pretrained_files_load_with_the_same_logits(tmp_path, name: str) -> None:
    config, cfg = saved_config(name)
    hf = perturbed(GPT2LMHeadModel(config), seed=len(name))
    hf.save_pretrained(tmp_path)  # safetensors by default
    state_dict = load_gpt2_safetensors(tmp_path / "model.safetensors")
    assert all(key.startswith("transformer.") for key in state_dict if key != "lm_head.weight")
    assert ("lm_head.weight" in state_dict) is not config.tie_word_embeddings  # a tied head is left out

    gpt = GPTModel(cfg)
    load_weights_into_gpt(gpt, state_dict)
    ids = torch.randint(0, cfg["vocab_size"], (2, cfg["context_length"]), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(gpt.eval()(ids), hf(ids).logits, atol=1e-5, rtol=0)
    head_is_embedding = torch.equal(gpt.out_head.weight, gpt.tok_emb.weight)
    assert head_is_embedding is config.tie_word_embeddings


def test_a_file_in_the_hubs_layout_loads_and_passes_the_download_check(monkeypatch, tmp_path) -> None:
    """The hub's gpt2 file was written from GPT2Model: keys without `transformer.`, no lm_head, and
    each layer's causal mask stored as `h.N.attn.bias`. Imitated here with safetensors' save_file."""
    cfg = {**TINY, "drop_rate": 0.0}  # GPT-2's context of 1024, which gpt2_config (used by the check) sets
    base = perturbed(GPT2Model(hf_config(cfg)), seed=5)
    tensors = {key: tensor.contiguous() for key, tensor in base.state_dict().items()}
    for i in range(cfg["n_layers"]):
        tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 1024, 1024).tril()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})

    gpt = GPTModel(cfg)
    load_weights_into_gpt(gpt, load_gpt2_safetensors(tmp_path))
    ids = torch.randint(0, cfg["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = base(ids).last_hidden_state @ base.wte.weight.T  # GPT-2's tied head
        torch.testing.assert_close(gpt.eval()(ids), expected, atol=1e-5, rtol=0)

    monkeypatch.setitem(GPT2_CONFIGS, "tiny-hub", cfg)
    weights.verify_gpt2_file(tmp_path / "model.safetensors", "tiny-hub")  # no ValueError: the layout is accepted


# ---------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------


def test_a_checkpoint_of_another_size_names_keys_shapes_and_config() -> None:
    wider = tiny_state_dict({**TINY, "emb_dim": 24, "n_layers": 3})
    gpt = GPTModel(TINY)
    before = logits(gpt)
    message = error_of(gpt, wider)
    assert "transformer.h.0.attn.c_attn.weight has shape (24, 72) but this GPTModel expects (16, 48)" in message
    assert "unexpected keys" in message and "transformer.h.2.ln_1.weight" in message
    assert "different config (emb_dim 24 vs 16, n_layers 3 vs 2 in this GPTModel)" in message
    torch.testing.assert_close(logits(gpt), before, rtol=0, atol=0)  # nothing was copied


def test_a_gpt2_size_is_recognised_in_the_hint() -> None:
    with torch.device("meta"):  # shapes only
        medium = GPT2LMHeadModel(GPT2Config(n_embd=1024, n_layer=24, n_head=16)).state_dict()
        gpt = GPTModel(gpt2_config("gpt2"))
    message = error_of(gpt, medium)
    assert "transformer.h.0.attn.c_attn.weight has shape (1024, 3072) but this GPTModel expects (768, 2304)" in message
    assert "it looks like 'gpt2-medium'" in message


def test_missing_and_unexpected_keys_are_named() -> None:
    state_dict = tiny_state_dict()
    del state_dict["transformer.h.1.mlp.c_fc.weight"]
    state_dict["transformer.h.0.attn.rotary.weight"] = torch.zeros(3)
    message = error_of(GPTModel(TINY), state_dict)
    assert "missing keys: transformer.h.1.mlp.c_fc.weight" in message
    assert "unexpected keys (this GPTModel has no place for them): transformer.h.0.attn.rotary.weight" in message


def test_a_transposed_weight_is_reported() -> None:
    state_dict = tiny_state_dict()
    state_dict["transformer.h.0.mlp.c_fc.weight"] = state_dict["transformer.h.0.mlp.c_fc.weight"].T.contiguous()
    message = error_of(GPTModel(TINY), state_dict)
    assert "transformer.h.0.mlp.c_fc.weight has shape (64, 16) but this GPTModel expects (16, 64)" in message


def test_qkv_bias_false_is_explained() -> None:
    message = error_of(GPTModel({**TINY, "qkv_bias": False}), tiny_state_dict())
    assert "qkv_bias=False" in message and "cfg['qkv_bias'] = True" in message


def test_a_checkpoint_without_qkv_biases_is_explained() -> None:
    state_dict = {key: t for key, t in tiny_state_dict().items() if not key.endswith("c_attn.bias")}
    message = error_of(GPTModel(TINY), state_dict)
    assert "missing keys: transformer.h.0.attn.c_attn.bias, transformer.h.1.attn.c_attn.bias" in message
    assert "built with qkv_bias=True: build it with cfg['qkv_bias'] = False" in message
    load_weights_into_gpt(GPTModel({**TINY, "qkv_bias": False}), state_dict)  # ... which then loads


def test_long_lists_are_shortened() -> None:
    message = error_of(GPTModel(TINY), {"wte.weight": torch.zeros(61, 16)})
    assert "missing keys: wpe.weight, ln_f.weight, ln_f.bias, h.0.ln_1.weight, h.0.ln_1.bias, " in message
    assert "... (27 in all)" in message and "qkv_bias" not in message


# ---------------------------------------------------------------------------------------------
# Download, offline: a fake urlopen serves a local file
# ---------------------------------------------------------------------------------------------

URL = "https://huggingface.co/tiny-gpt2/resolve/main/model.safetensors"


class FakeResponse(io.BytesIO):
    """Enough of http.client.HTTPResponse for the downloader: status, headers, read(), a context."""

    def __init__(self, body: bytes, status: int) -> None:
        super().__init__(body)
        self.status = status
        self.headers = {"Content-Length": str(len(body))}


class FakeServer:
    """Serves `body` at URL; answers Range requests with 206 and the rest, like huggingface.co."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.ranges: list[str | None] = []

    def urlopen(self, request: urllib.request.Request, timeout: float | None = None) -> FakeResponse:
        assert request.full_url == URL
        byte_range = request.get_header("Range")
        self.ranges.append(byte_range)
        if byte_range:
            start = int(byte_range.removeprefix("bytes=").removesuffix("-"))
            if start >= len(self.body):
                raise urllib.error.HTTPError(URL, 416, "Range Not Satisfiable", {}, None)
            return FakeResponse(self.body[start:], 206)
        return FakeResponse(self.body, 200)


@pytest.fixture
def tiny_gpt2(monkeypatch, tmp_path) -> bytes:
    """Register a tiny GPT-2 size, 'tiny-gpt2', and return the bytes of its model.safetensors."""
    monkeypatch.setitem(GPT2_CONFIGS, "tiny-gpt2", {**TINY, "qkv_bias": False, "drop_rate": 0.1})
    monkeypatch.setitem(GPT2_SAFETENSORS, "tiny-gpt2", GPT2Checkpoint("tiny-gpt2", URL))
    torch.manual_seed(0)
    GPT2LMHeadModel(hf_config(TINY)).save_pretrained(tmp_path / "saved")
    return (tmp_path / "saved" / "model.safetensors").read_bytes()


def serve(monkeypatch, server: FakeServer) -> FakeServer:
    monkeypatch.setattr(urllib.request, "urlopen", server.urlopen)
    return server


def test_download_caches_and_loads(monkeypatch, tmp_path, tiny_gpt2) -> None:
    server = serve(monkeypatch, FakeServer(tiny_gpt2))
    path = download_gpt2_weights("tiny-gpt2", tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "tiny-gpt2" / "model.safetensors"
    assert path.read_bytes() == tiny_gpt2 and not path.with_name("model.safetensors.part").exists()
    assert server.ranges == [None]

    assert download_gpt2_weights("tiny-gpt2", tmp_path / "cache", progress=False) == path
    assert server.ranges == [None]  # cached: no second request
    gpt = GPTModel(gpt2_config("tiny-gpt2"))
    load_weights_into_gpt(gpt, load_gpt2_safetensors(path))


def test_download_resumes_a_partial_file(monkeypatch, tmp_path, tiny_gpt2) -> None:
    server = serve(monkeypatch, FakeServer(tiny_gpt2))
    part = tmp_path / "tiny-gpt2" / "model.safetensors.part"
    part.parent.mkdir()
    part.write_bytes(tiny_gpt2[:1000])
    path = download_gpt2_weights("tiny-gpt2", tmp_path, progress=False)
    assert server.ranges == ["bytes=1000-"]
    assert path.read_bytes() == tiny_gpt2 and not part.exists()


@pytest.mark.parametrize("corruption", ["truncated", "garbage", "other size"])
def test_a_corrupt_download_is_deleted(monkeypatch, tmp_path, tiny_gpt2, corruption) -> None:
    if corruption == "truncated":
        body = tiny_gpt2[: len(tiny_gpt2) // 2]
    elif corruption == "garbage":
        body = b"<html>Service Unavailable</html>"
    else:  # a valid safetensors file, of a model of another size
        GPT2LMHeadModel(hf_config({**TINY, "emb_dim": 8})).save_pretrained(tmp_path / "other")
        body = (tmp_path / "other" / "model.safetensors").read_bytes()
    serve(monkeypatch, FakeServer(body))
    with pytest.raises(ValueError, match="is corrupt and was deleted"):
        download_gpt2_weights("tiny-gpt2", tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "tiny-gpt2").iterdir()) == []


def test_sha256_is_checked_when_known(monkeypatch, tmp_path, tiny_gpt2) -> None:
    serve(monkeypatch, FakeServer(tiny_gpt2))
    with pytest.raises(ValueError, match="SHA-256"):
        download_gpt2_weights("tiny-gpt2", tmp_path, sha256="0" * 64, progress=False)
    assert list((tmp_path / "tiny-gpt2").iterdir()) == []
    good = hashlib.sha256(tiny_gpt2).hexdigest()
    assert download_gpt2_weights("tiny-gpt2", tmp_path, sha256=good, progress=False).read_bytes() == tiny_gpt2


def test_the_tables_pinned_sha256_and_size_are_enforced(monkeypatch, tmp_path, tiny_gpt2) -> None:
    serve(monkeypatch, FakeServer(tiny_gpt2))
    folder = tmp_path / "tiny-gpt2"
    other = hashlib.sha256(tiny_gpt2 + b"!").hexdigest()  # the hash of another file
    monkeypatch.setitem(GPT2_SAFETENSORS, "tiny-gpt2", GPT2Checkpoint("tiny-gpt2", URL, sha256=other))
    with pytest.raises(ValueError, match=f"corrupt and was deleted.*has SHA-256 .*not the expected {other[:12]}"):
        download_gpt2_weights("tiny-gpt2", tmp_path, progress=False)  # no sha256= passed: the table's applies
    assert list(folder.iterdir()) == []

    wrong_size = len(tiny_gpt2) + 1
    monkeypatch.setitem(GPT2_SAFETENSORS, "tiny-gpt2", GPT2Checkpoint("tiny-gpt2", URL, size=wrong_size))
    with pytest.raises(ValueError, match=f"has {len(tiny_gpt2):,} bytes, not the expected {wrong_size:,}"):
        download_gpt2_weights("tiny-gpt2", tmp_path, progress=False)
    assert list(folder.iterdir()) == []

    good = hashlib.sha256(tiny_gpt2).hexdigest()
    pinned = GPT2Checkpoint("tiny-gpt2", URL, sha256=good, size=len(tiny_gpt2))
    monkeypatch.setitem(GPT2_SAFETENSORS, "tiny-gpt2", pinned)
    assert download_gpt2_weights("tiny-gpt2", tmp_path, progress=False).read_bytes() == tiny_gpt2


def test_a_cached_file_is_hashed_once_until_it_changes(monkeypatch, tmp_path, tiny_gpt2) -> None:
    server = serve(monkeypatch, FakeServer(tiny_gpt2))
    good = hashlib.sha256(tiny_gpt2).hexdigest()
    monkeypatch.setitem(GPT2_SAFETENSORS, "tiny-gpt2", GPT2Checkpoint("tiny-gpt2", URL, sha256=good))
    hashed = []
    real_sha256_of = files.sha256_of
    monkeypatch.setattr(files, "sha256_of", lambda path: hashed.append(path.name) or real_sha256_of(path))

    path = download_gpt2_weights("tiny-gpt2", tmp_path, progress=False)
    assert hashed == ["model.safetensors.part"]
    assert download_gpt2_weights("tiny-gpt2", tmp_path, progress=False) == path
    assert hashed == ["model.safetensors.part"]  # remembered: not read again

    path.write_bytes(tiny_gpt2[:-8] + bytes(8))  # same size, valid header, other bytes: only the hash can tell
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    assert download_gpt2_weights("tiny-gpt2", tmp_path, progress=False).read_bytes() == tiny_gpt2
    assert hashed == ["model.safetensors.part", "model.safetensors", "model.safetensors.part"]
    assert server.ranges == [None, None]  # the changed file failed its hash and was downloaded again


def test_a_corrupt_cached_file_is_downloaded_again(monkeypatch, tmp_path, tiny_gpt2) -> None:
    server = serve(monkeypatch, FakeServer(tiny_gpt2))
    target = tmp_path / "tiny-gpt2" / "model.safetensors"
    target.parent.mkdir()
    target.write_bytes(tiny_gpt2[:-10])
    assert download_gpt2_weights("tiny-gpt2", tmp_path, progress=False).read_bytes() == tiny_gpt2
    assert server.ranges == [None]


def test_an_http_error_is_reported(monkeypatch, tmp_path, tiny_gpt2) -> None:
    def not_found(request, timeout=None):
        raise urllib.error.HTTPError(URL, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(ConnectionError, match="huggingface.co answered 404 Not Found"):
        download_gpt2_weights("tiny-gpt2", tmp_path, progress=False)


def test_the_default_cache_is_outside_the_repository() -> None:
    assert Path(weights.DEFAULT_CACHE_DIR).is_absolute()
    with pytest.raises(KeyError, match="unknown GPT-2 size"):
        download_gpt2_weights("gpt-5")
