"""Exercise 4.3's check follows each dropout rate to where the model applies it, and rejects wrong answers."""

import pytest
import torch
import torch.nn as nn

from shared.attention import MultiHeadAttention
from shared.checks import check_exercise_4_3
from shared.transformer import FeedForward, LayerNorm

TINY = {"vocab_size": 11, "context_length": 8, "emb_dim": 12, "n_heads": 2, "n_layers": 2, "qkv_bias": False}


class Block(nn.Module):
    """The book's transformer block with separate rates (explicit attention, so its dropout module runs)."""

    def __init__(self, cfg, attn, shortcut, shortcut_twice=True):
        super().__init__()
        self.att = MultiHeadAttention(cfg["emb_dim"], cfg["emb_dim"], cfg["context_length"], attn, cfg["n_heads"])
        self.ff = FeedForward(cfg)
        self.norm1, self.norm2 = LayerNorm(cfg["emb_dim"]), LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(shortcut)
        self.shortcut_twice = shortcut_twice

    def forward(self, x):
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        ff = self.ff(self.norm2(x))
        return x + (self.drop_shortcut(ff) if self.shortcut_twice else ff)


class Model(nn.Module):
    def __init__(self, emb, attn, shortcut, shortcut_twice=True):
        super().__init__()
        self.tok_emb = nn.Embedding(TINY["vocab_size"], TINY["emb_dim"])
        self.pos_emb = nn.Embedding(TINY["context_length"], TINY["emb_dim"])
        self.drop_emb = nn.Dropout(emb)
        self.trf_blocks = nn.Sequential(*[Block(TINY, attn, shortcut, shortcut_twice) for _ in range(2)])
        self.out_head = nn.Linear(TINY["emb_dim"], TINY["vocab_size"], bias=False)

    def forward(self, idx):
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1])))
        return self.out_head(self.trf_blocks(x))


def test_right_rates_in_the_right_places_pass_and_keep_the_mode(capsys):
    model = Model(0.1, 0.2, 0.3).eval()
    check_exercise_4_3(model)
    assert "Exercise 4.3: correct!" in capsys.readouterr().out
    assert not model.training  # the check's training-mode pass leaves the model as it found it


@pytest.mark.parametrize("rates, message", [
    ((0.1, 0.1, 0.1), "attention-weight dropout should be drop_rate_attn = 0.2"),  # one drop_rate everywhere
    ((0.1, 0.3, 0.2), "attention-weight dropout should be drop_rate_attn = 0.2"),  # attention and shortcut swapped
    ((0.2, 0.1, 0.3), "should be drop_rate_emb = 0.1"),  # embedding and attention swapped
    ((0.1, 0.2, 0.1), "shortcut dropout should be drop_rate_shortcut = 0.3"),
])
def test_a_rate_in_the_wrong_place_is_rejected(rates, message):
    with pytest.raises(AssertionError, match=message):
        check_exercise_4_3(Model(*rates))


def test_a_shortcut_dropout_left_out_is_rejected():
    with pytest.raises(AssertionError, match="should apply drop_shortcut twice"):
        check_exercise_4_3(Model(0.1, 0.2, 0.3, shortcut_twice=False))


def test_attribute_values_alone_do_not_pass_when_forward_ignores_them():
    model = Model(0.1, 0.2, 0.3)
    model.trf_blocks[1].drop_shortcut = nn.Dropout(0.3)
    model.trf_blocks[1].ff.layers.append(nn.Dropout(0.5))  # an extra dropout applied inside the block
    with pytest.raises(AssertionError, match="applies 3 dropout"):
        check_exercise_4_3(model)
