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


def test_muon_lr_moves_only_the_blocks_matrices():
    """lr 1e-2 with muon_lr 3e-2: the matrices move as under lr 3e-2, everything else as under lr 1e-2.

    The schedule's rate reaches Muon times its lr_scale (here 3), through `train_step`.
    """
    from shared.pretraining import train_step

    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, CFG["vocab_size"], (4, CFG["context_length"] + 1), generator=generator)
    batch = [(ids[:, :-1], ids[:, 1:])]
    runs = {}
    for name, lr, muon_lr in (("split", 1e-2, 3e-2), ("low", 1e-2, None), ("high", 3e-2, None)):
        torch.manual_seed(0)
        model = GPTModel(CFG)
        optimizer = make_optimizer(model, "muon", lr=lr, weight_decay=0.1, device=CPU, muon_lr=muon_lr)
        train_step(model, batch, optimizer, CPU, lr=lr)  # one step: all three start from the same gradient
        runs[name] = (model, optimizer)
    split, low, high = (runs[k][0] for k in ("split", "low", "high"))
    assert [g["lr"] for g in runs["split"][1].muon.param_groups] == [pytest.approx(3e-2)]
    assert [g["lr"] for g in runs["split"][1].adamw.param_groups] == [1e-2, 1e-2]
    assert runs["split"][1].param_groups[0]["lr"] == 1e-2  # the first group carries the schedule's rate, unscaled
    muon_ids = {id(p) for g in runs["split"][1].muon.param_groups for p in g["params"]}
    for (name, p), q_low, q_high in zip(split.named_parameters(), low.parameters(), high.parameters()):
        expected = q_high if id(p) in muon_ids else q_low
        torch.testing.assert_close(p, expected, rtol=1e-6, atol=1e-7, msg=name)
    assert not torch.equal(low.trf_blocks[0].ff.layers[0].weight, high.trf_blocks[0].ff.layers[0].weight)


def test_resuming_keeps_this_runs_muon_lr(tmp_path):
    model, optimizer = make()
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, optimizer, step=0, config=CFG)
    resumed = MuonWithAdamW(model, lr=1e-2, weight_decay=0.1, muon_lr=2e-2)
    load_checkpoint(path, model, resumed)
    assert [g["lr_scale"] for g in resumed.muon.param_groups] == [2.0]
    with pytest.raises(ValueError, match="muon_lr must be positive"):
        MuonWithAdamW(model, lr=1e-2, weight_decay=0.1, muon_lr=0.0)
