"""Checkpoints: everything round-trips, resuming is exact, writes are atomic, bad files are refused."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from shared import checkpoint as checkpoint_module
from shared.checkpoint import NonFiniteError, export_weights, load_checkpoint, read_checkpoint, save_checkpoint
from shared.pretraining import train_step
from shared.transformer import GPTModel

CFG = {"vocab_size": 50, "context_length": 12, "emb_dim": 16, "n_heads": 2, "n_layers": 2, "drop_rate": 0.1,
       "qkv_bias": False}


def batch(step: int):
    generator = torch.Generator().manual_seed(step)
    x = torch.randint(0, CFG["vocab_size"], (4, CFG["context_length"]), generator=generator)
    return x, torch.roll(x, -1, dims=1)


def make(seed: int = 0):
    torch.manual_seed(seed)
    model = GPTModel(CFG)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def train(model, optimizer, steps: range) -> list[float]:
    model.train()  # dropout on: resuming must restore the random state too
    return [train_step(model, [batch(s)], optimizer, "cpu", max_norm=1.0)[0] for s in steps]


def test_resuming_gives_the_losses_of_an_uninterrupted_run(tmp_path):
    model, optimizer = make()
    straight = train(model, optimizer, range(8))

    model, optimizer = make()
    first_half = train(model, optimizer, range(4))
    save_checkpoint(tmp_path / "c.safetensors", model, optimizer, step=4)
    torch.manual_seed(999)  # disturb the random state, as a new process would
    model, optimizer = make(seed=42)  # different initial weights, overwritten by the load
    step = load_checkpoint(tmp_path / "c.safetensors", model, optimizer, restore_rng=True).step
    second_half = train(model, optimizer, range(step, 8))
    assert first_half + second_half == straight  # exactly, not approximately


def test_everything_round_trips(tmp_path):
    model, optimizer = make()
    train(model, optimizer, range(3))
    random.seed(7)
    save_checkpoint(tmp_path / "c.safetensors", model, optimizer, step=3, extra={"note": "hi", "n": [1, 2]})
    expected_python, expected_torch = random.random(), torch.rand(3)

    loaded_model, loaded_optimizer = make(seed=1)
    info = load_checkpoint(tmp_path / "c.safetensors", loaded_model, loaded_optimizer, restore_rng=True)
    assert (info.step, info.config, info.extra) == (3, CFG, {"note": "hi", "n": [1, 2]})
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded_model.state_dict().items()):
        assert torch.equal(a, b), name
    saved_state, loaded_state = optimizer.state_dict(), loaded_optimizer.state_dict()
    assert saved_state["param_groups"] == loaded_state["param_groups"]
    for key, state in saved_state["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(loaded_state["state"][key][name])), name
    assert random.random() == expected_python
    assert torch.equal(torch.rand(3), expected_torch)


def tied_model(seed: int = 0):
    from shared.architectures import build_model

    torch.manual_seed(seed)
    return build_model({**CFG, "tie_embeddings": True})


def test_tied_weights_are_stored_once_and_load_back_tied(tmp_path):
    model = tied_model()
    assert model.out_head.weight is model.tok_emb.weight
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer, range(2))
    path = save_checkpoint(tmp_path / "c.safetensors", model, optimizer, step=2)
    with safe_open(path, framework="pt") as f:
        assert "model.out_head.weight" not in f.keys()
        assert f.metadata()["aliases"] == '{"model.out_head.weight": "model.tok_emb.weight"}'
    tensors = read_checkpoint(path)[0]
    assert tensors["model.out_head.weight"] is tensors["model.tok_emb.weight"]

    loaded = tied_model(seed=1)
    load_checkpoint(path, loaded, torch.optim.AdamW(loaded.parameters(), lr=1e-2))
    assert loaded.out_head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()
    assert torch.equal(loaded.tok_emb.weight, model.tok_emb.weight)
    untied = make(seed=1)[0]  # an untied model takes the one matrix twice
    load_checkpoint(path, untied)
    assert torch.equal(untied.out_head.weight, model.tok_emb.weight)

    for dtype in (None, torch.bfloat16):  # an export keeps the matrix once
        small = export_weights(path, tmp_path / "small.safetensors", dtype=dtype)
        with safe_open(small, framework="pt") as f:
            assert "model.out_head.weight" not in f.keys() and "aliases" in f.metadata()
        load_checkpoint(small, tied_model(seed=2))


def test_tied_checkpoints_with_two_copies_load_and_untied_ones_are_refused_by_a_tied_model(tmp_path):
    model = tied_model()
    path = save_checkpoint(tmp_path / "c.safetensors", model)
    rewrite(path, change_tensors=lambda t: t.__setitem__("model.out_head.weight", t["model.tok_emb.weight"].clone()),
            drop_metadata=("aliases", "tensors_sha256"))  # as files written before aliases were
    loaded = tied_model(seed=1)
    load_checkpoint(path, loaded)
    assert loaded.out_head.weight is loaded.tok_emb.weight and torch.equal(loaded.tok_emb.weight, model.tok_emb.weight)

    untied_path = save_checkpoint(tmp_path / "untied.safetensors", make()[0])
    with pytest.raises(ValueError, match="tie_embeddings: checkpoint False .* model True"):
        load_checkpoint(untied_path, tied_model())


def test_an_alias_to_a_missing_tensor_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", tied_model())
    with safe_open(path, framework="pt") as f:
        metadata = {**f.metadata(), "aliases": '{"model.out_head.weight": "model.nothing"}'}
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ValueError, match="is corrupt: its tensor 'model.out_head.weight' is an alias of "
                                         "'model.nothing'"):
        read_checkpoint(path)


def test_a_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    model, optimizer = make()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, optimizer, step=1)
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, optimizer, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_a_model_with_another_config_is_refused_naming_the_keys(tmp_path):
    model, _ = make()
    save_checkpoint(tmp_path / "c.safetensors", model)
    other = GPTModel({**CFG, "emb_dim": 32, "n_layers": 3})
    with pytest.raises(ValueError, match=r"(?s)emb_dim: checkpoint 16, model 32.*n_layers: checkpoint 2, model 3"):
        load_checkpoint(tmp_path / "c.safetensors", other)


def test_dropout_and_attention_kernel_may_differ(tmp_path):
    model, _ = make()
    save_checkpoint(tmp_path / "c.safetensors", model)
    inference_model = GPTModel({**CFG, "drop_rate": 0.0, "use_sdpa": False})
    load_checkpoint(tmp_path / "c.safetensors", inference_model)
    assert torch.equal(inference_model.tok_emb.weight, model.tok_emb.weight)


def test_a_truncated_file_is_refused(tmp_path):
    model, _ = make()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path, make()[0])


def test_other_safetensors_files_are_refused(tmp_path):
    save_file({"wte.weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "model.safetensors", make()[0])


def test_a_checkpoint_without_optimizer_state_says_so(tmp_path):
    model, optimizer = make()
    save_checkpoint(tmp_path / "c.safetensors", model)
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(tmp_path / "c.safetensors", model, optimizer)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_exported_weights_load_without_the_optimizer_and_are_smaller(tmp_path, dtype):
    model, optimizer = make()
    train(model, optimizer, range(3))
    full = save_checkpoint(tmp_path / "full.safetensors", model, optimizer, step=3, extra={"note": "hi"})
    small = export_weights(full, tmp_path / "small.safetensors", dtype=dtype)
    # AdamW keeps two moments per weight: the export drops them (and bf16 halves what is left).
    assert small.stat().st_size < full.stat().st_size / (5 if dtype else 2.5)

    loaded, _ = make(seed=1)
    info = load_checkpoint(small, loaded)
    assert (info.step, info.config, info.extra) == (3, CFG, {"note": "hi"})
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == torch.float32, name  # loading casts back to the model's dtype
        expected = a if dtype is None else a.to(dtype).float()
        assert torch.equal(b, expected), name
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(small, loaded, torch.optim.AdamW(loaded.parameters()))


def rewrite(path, change_tensors=None, drop_metadata=()):
    """Write the checkpoint at `path` again through safetensors alone, as an older or a tampered file would be."""
    with safe_open(path, framework="pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k not in drop_metadata}
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, path, metadata=metadata)


def test_non_finite_weights_are_never_saved_over_a_good_checkpoint(tmp_path):
    model, optimizer = make()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, optimizer, step=1)
    before = path.read_bytes()
    with torch.no_grad():
        model.trf_blocks[1].att.W_query.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"refusing to save step 2 .*trf_blocks\.1\.att\.W_query.*previous "
                                             "checkpoint there is kept"):
        save_checkpoint(path, model, optimizer, step=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_a_flipped_bit_is_found_by_the_tensors_checksum(tmp_path):
    model, _ = make()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # one bit of the last tensor stored: the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is corrupt: its tensors do not match the SHA-256"):
        load_checkpoint(path, make()[0])


def test_a_checkpoint_from_before_the_checksum_still_loads_but_non_finite_weights_do_not(tmp_path):
    model, _ = make()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model)
    rewrite(path, drop_metadata=("tensors_sha256",))
    loaded = make(seed=1)[0]
    load_checkpoint(path, loaded)
    assert torch.equal(loaded.tok_emb.weight, model.tok_emb.weight)

    rewrite(path, change_tensors=lambda t: t["model.tok_emb.weight"].__setitem__((0, 0), float("inf")))
    assert "tensors_sha256" not in read_checkpoint(path)[1]  # readable: the file itself is well formed
    with pytest.raises(NonFiniteError, match="holds NaN or infinity in 1 tensor.*model.tok_emb.weight"):
        load_checkpoint(path, make()[0])


def test_a_config_that_does_not_describe_the_tensors_is_refused(tmp_path):
    model, _ = make()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, config={**CFG, "n_layers": 1})  # metadata says 1 layer, tensors hold 2
    with pytest.raises(ValueError, match="tensors do not fit a model of its own config.*corrupt or was edited"):
        load_checkpoint(path, GPTModel({**CFG, "n_layers": 1}))
