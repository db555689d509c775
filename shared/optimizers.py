"""The training command's optimizers: AdamW, as in the book, or Muon for the transformer blocks' matrices.

Muon (Jordan et al., 2024; `torch.optim.Muon`) updates a weight matrix with the orthogonalised
momentum of its gradient: every direction of the update gets the same size, instead of the few
largest ones dominating. It is meant for the hidden matrices only, so `MuonWithAdamW` gives those
to Muon and the rest (token and position embeddings, the output head, norms and biases) to AdamW.
With `adjust_lr_fn="match_rms_adamw"` Muon's updates have AdamW's typical size, so one schedule
serves both; Muon's groups carry an "lr_scale" (its peak learning rate over AdamW's), which
`shared.pretraining.train_step` multiplies into the scheduled rate. On the training command's
default model it reaches a lower held-out loss than AdamW in the same number of steps
(`benchmarks/README.md` has the numbers).
"""

from __future__ import annotations

import torch
import torch.nn as nn

OPTIMIZERS = ("adamw", "muon")


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's two groups: matrices with weight decay, biases and norm parameters without."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class MuonWithAdamW:
    """Muon for the 2-D weights inside `model.trf_blocks`, AdamW for every other parameter.

    It behaves like one optimizer: `param_groups` lists both optimizers' groups (so a schedule that
    sets each group's "lr" reaches both), and `state_dict` / `load_state_dict` keep them in one
    dict in PyTorch's format, which `shared.checkpoint` saves and restores.
    """

    def __init__(self, model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95),
                 fused: bool | None = None, muon_lr: float | None = None):
        if muon_lr is not None and muon_lr <= 0:
            raise ValueError(f"muon_lr must be positive, got {muon_lr}")
        if not hasattr(model, "trf_blocks"):
            raise TypeError("MuonWithAdamW expects a GPTModel (a model with .trf_blocks); use AdamW for other models.")
        hidden = {id(p) for p in model.trf_blocks.parameters() if p.dim() == 2}
        muon_params = [p for p in model.parameters() if id(p) in hidden]
        rest = [{**group, "params": [p for p in group["params"] if id(p) not in hidden]}
                for group in _param_groups(model, weight_decay)]
        self.muon_lr_scale = 1.0 if muon_lr is None else muon_lr / lr
        self.muon = torch.optim.Muon(muon_params, lr=lr * self.muon_lr_scale, weight_decay=weight_decay,
                                     adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(rest, lr=lr, betas=betas, fused=fused)
        self._set_muon_lr_scale()

    def _set_muon_lr_scale(self) -> None:
        for group in self.muon.param_groups:
            group["lr_scale"] = self.muon_lr_scale

    @property
    def param_groups(self) -> list[dict]:
        # AdamW's first: their "lr" is the schedule's own, which code reading param_groups[0] expects.
        return self.adamw.param_groups + self.muon.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def _muon_param_count(self, groups: list[dict]) -> int:
        return sum(len(group["params"]) for group in groups[: len(self.muon.param_groups)])

    def state_dict(self) -> dict:
        """Both state dicts as one: AdamW's parameter indices follow Muon's."""
        muon, adamw = self.muon.state_dict(), self.adamw.state_dict()
        offset = self._muon_param_count(muon["param_groups"])
        state = {**muon["state"], **{index + offset: s for index, s in adamw["state"].items()}}
        groups = muon["param_groups"] + [{**g, "params": [i + offset for i in g["params"]]}
                                         for g in adamw["param_groups"]]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        n_muon = len(self.muon.param_groups)
        if len(groups) != n_muon + len(self.adamw.param_groups):
            raise ValueError(f"this optimizer state has {len(groups)} parameter groups; MuonWithAdamW has "
                             f"{n_muon + len(self.adamw.param_groups)}. Was it saved from another optimizer?")
        offset = self._muon_param_count(groups)
        state = state_dict["state"]
        self.muon.load_state_dict({"state": {i: s for i, s in state.items() if i < offset},
                                   "param_groups": groups[:n_muon]})
        self.adamw.load_state_dict({"state": {i - offset: s for i, s in state.items() if i >= offset},
                                    "param_groups": [{**g, "params": [i - offset for i in g["params"]]}
                                                     for g in groups[n_muon:]]})
        self._set_muon_lr_scale()  # this run's --muon-lr, not the saved one


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, device: torch.device,
                   muon_lr: float | None = None):
    """The training command's optimizer `name` ("adamw" or "muon") for `model`, betas (0.9, 0.95).

    `muon_lr` is the peak learning rate of Muon's matrices (default: `lr`, which the rest gets).
    """
    fused = device.type in ("cpu", "cuda")
    if name == "adamw":
        return torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.95), fused=fused)
    if name == "muon":
        return MuonWithAdamW(model, lr=lr, weight_decay=weight_decay, fused=fused, muon_lr=muon_lr)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
