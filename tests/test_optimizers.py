"""`shared.optimizers`: Muon for the blocks' matrices and AdamW for the rest, acting as one optimizer."""

from __future__ import annotations

import pytest
import torch

from shared.checkpoint import load_checkpoint, save_checkpoint
from shared.optimizers import MuonWithAdamW, make_optimizer
from shared.transformer import GPTModel

CFG = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2, "drop_rate": 0.0,
       "qkv_bias": True}
CPU = torch.device("cpu")


def make(seed: int = 0) -> tuple[GPTModel, MuonWithAdamW]:
    torch.manual_seed(seed)
    model = GPTModel(CFG)
    return model, MuonWithAdamW(model, lr=1e-2, weight_decay=0.1)


def step(model, optimizer, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, CFG["vocab_size"], (4, CFG["context_length"] + 1), generator=generator)
    loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def test_muon_gets_the_blocks_matrices_and_adamw_everything_else():
    model, optimizer = make()
    muon = {id(p) for g in optimizer.muon.param_groups for p in g["params"]}
    adamw = {id(p) for g in optimizer.adamw.param_groups for p in g["params"]}
    assert not muon & adamw and muon | adamw == {id(p) for p in model.parameters()}
    for name, p in model.named_parameters():
        assert (id(p) in muon) == (name.startswith("trf_blocks.") and p.dim() == 2), name
    # embeddings and the output head are matrices too, but they stay with AdamW
    assert {id(model.tok_emb.weight), id(model.out_head.weight)} <= adamw


def test_setting_the_learning_rate_reaches_both_optimizers():
    model, optimizer = make()
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    before = [p.detach().clone() for p in model.parameters()]
    step(model, optimizer, seed=1)
    # lr 0: Muon and AdamW both leave every weight where it was (weight decay is scaled by lr too)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for group in optimizer.param_groups:
        group["lr"] = 1e-2
    step(model, optimizer, seed=1)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()) if a.dim() == 2)


def test_training_lowers_the_loss():
    model, optimizer = make()
    losses = [step(model, optimizer, seed=7) for _ in range(30)]  # the same batch again and again
    assert losses[-1] < 0.5 * losses[0]


def test_a_checkpoint_resumes_muon_exactly(tmp_path):
    model, optimizer = make()
    straight = [step(model, optimizer, seed=s) for s in range(6)]

    model, optimizer = make()
    halves = [step(model, optimizer, seed=s) for s in range(3)]
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, optimizer, step=3, config=CFG)
    model, optimizer = make(seed=99)  # other weights: everything must come from the file
    load_checkpoint(path, model, optimizer)
    halves += [step(model, optimizer, seed=s) for s in range(3, 6)]
    assert halves == straight


def test_adamw_state_is_not_loaded_into_muon(tmp_path):
    torch.manual_seed(0)
    model = GPTModel(CFG)
    adamw = make_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1, device=CPU)
    step(model, adamw, seed=0)
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, adamw, step=1, config=CFG)
    with pytest.raises(ValueError, match="another optimizer"):
        load_checkpoint(path, model, make_optimizer(model, "muon", lr=1e-3, weight_decay=0.1, device=CPU))


def test_an_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; choose one of adamw, muon"):
        make_optimizer(GPTModel(CFG), "sgd", lr=1e-3, weight_decay=0.0, device=CPU)
    with pytest.raises(TypeError, match="expects a GPTModel"):
        MuonWithAdamW(torch.nn.Linear(3, 3), lr=1e-3, weight_decay=0.0)
