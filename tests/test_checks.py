"""The exercise self-checks accept the worked solution, reject wrong answers, and pass over stubs."""

import pytest
import torch

from shared.attention import MultiHeadAttention, MultiHeadAttentionWrapper, SelfAttention_v1, SelfAttention_v2
from shared.checks import (
    check_exercise_2_1,
    check_exercise_2_2,
    check_exercise_3_1,
    check_exercise_3_2,
    check_exercise_3_3,
    check_exercise_4_1,
    check_exercise_4_2,
    check_exercise_4_3,
)
from shared.data import create_dataloader_v1, load_novel
from shared.tokenization import get_gpt2_tokenizer
from shared.transformer import GPT_CONFIG_124M, GPTModel, TransformerBlock


@pytest.fixture(scope="module")
def raw_text():
    return load_novel("prideprejudice")[:20_000]


def test_untouched_exercises_say_so_and_pass(capsys):
    check_exercise_2_1(None, None)
    check_exercise_2_2(None, None)
    out = capsys.readouterr().out
    assert out.count("not attempted yet") == 2


def test_exercise_2_1(capsys):
    tokenizer = get_gpt2_tokenizer()
    ids = tokenizer.encode("Akwirw ier")
    check_exercise_2_1(ids, [tokenizer.decode([i]) for i in ids])
    assert "Exercise 2.1: correct!" in capsys.readouterr().out

    with pytest.raises(AssertionError, match="GPT-2's tokenizer gives 6 ids"):
        check_exercise_2_1(tokenizer.encode("Akwirw  ier"), ["Akwirw ier"])
    with pytest.raises(AssertionError, match="one piece per id"):
        check_exercise_2_1(ids, [tokenizer.decode(ids)])
    with pytest.raises(AssertionError, match="join to"):
        check_exercise_2_1(ids, ["A", "k", "w", "i", "r", "w"])


def test_exercise_2_2(raw_text, capsys):
    good_2 = create_dataloader_v1(raw_text, batch_size=4, max_length=2, stride=2, shuffle=False)
    good_8 = create_dataloader_v1(raw_text, batch_size=4, max_length=8, stride=2, shuffle=False)
    check_exercise_2_2(good_2, good_8)
    assert "Exercise 2.2: correct!" in capsys.readouterr().out

    wrong_stride = create_dataloader_v1(raw_text, batch_size=4, max_length=8, stride=8, shuffle=False)
    with pytest.raises(AssertionError, match="row 1 should start 2 tokens after row 0"):
        check_exercise_2_2(good_2, wrong_stride)
    with pytest.raises(AssertionError, match="max_length=2"):
        check_exercise_2_2(good_8, good_8)
    torch.manual_seed(0)
    shuffled = create_dataloader_v1(raw_text, batch_size=4, max_length=8, stride=2, shuffle=True)
    with pytest.raises(AssertionError, match="shuffle=False"):
        check_exercise_2_2(good_2, shuffled)


# -- chapters 3 and 4 -------------------------------------------------------------------------------

def test_untouched_chapter_3_and_4_exercises_pass(capsys):
    check_exercise_3_1(None, None, None)
    check_exercise_3_2(None, None)
    check_exercise_3_3(None)
    check_exercise_4_1(None, None)
    check_exercise_4_2(None)
    check_exercise_4_3(None)
    assert capsys.readouterr().out.count("not attempted yet") == 6


def test_exercise_3_1(capsys):
    torch.manual_seed(123)
    inputs = torch.rand(6, 3)
    sa_v2, sa_v1 = SelfAttention_v2(3, 2), SelfAttention_v1(3, 2)
    with pytest.raises(AssertionError, match="different context vectors"):
        check_exercise_3_1(sa_v1, sa_v2, inputs)  # weights not transferred yet
    sa_v1.W_query = torch.nn.Parameter(sa_v2.W_query.weight)  # forgot the transpose
    with pytest.raises(AssertionError, match="transposed"):
        check_exercise_3_1(sa_v1, sa_v2, inputs)
    for name in ("W_query", "W_key", "W_value"):
        setattr(sa_v1, name, torch.nn.Parameter(getattr(sa_v2, name).weight.T))
    check_exercise_3_1(sa_v1, sa_v2, inputs)
    assert "Exercise 3.1: correct!" in capsys.readouterr().out


def test_exercise_3_2(capsys):
    torch.manual_seed(123)
    batch = torch.rand(2, 6, 3)
    check_exercise_3_2(MultiHeadAttentionWrapper(3, 1, 6, 0.0, num_heads=2), batch)
    assert "Exercise 3.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="have 4 dimensions, not 2"):
        check_exercise_3_2(MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2), batch)
    with pytest.raises(AssertionError, match="keep num_heads=2"):
        check_exercise_3_2(MultiHeadAttentionWrapper(3, 1, 6, 0.0, num_heads=1), batch)


def test_exercise_3_3(capsys):
    check_exercise_3_3(MultiHeadAttention(768, 768, 1024, 0.0, num_heads=12))
    assert "Exercise 3.3: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="num_heads is 8"):
        check_exercise_3_3(MultiHeadAttention(768, 768, 1024, 0.0, num_heads=8))
    with pytest.raises(AssertionError, match="context_length"):
        check_exercise_3_3(MultiHeadAttention(768, 768, 256, 0.0, num_heads=12))


def test_exercise_4_1(capsys):
    block = TransformerBlock(GPT_CONFIG_124M)
    ff = sum(p.numel() for p in block.ff.parameters())
    att = sum(p.numel() for p in block.att.parameters())
    check_exercise_4_1(ff, att)
    assert "Exercise 4.1: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="ff_params"):
        check_exercise_4_1(att, ff)  # swapped
    with pytest.raises(AssertionError, match="att_params"):
        check_exercise_4_1(ff, att - 768)  # forgot out_proj's bias


def test_exercise_4_2(capsys):
    counts = {}
    for name, (emb, layers, heads) in {"gpt2-medium": (1024, 24, 16), "gpt2-large": (1280, 36, 20),
                                       "gpt2-xl": (1600, 48, 25)}.items():
        with torch.device("meta"):
            model = GPTModel({**GPT_CONFIG_124M, "emb_dim": emb, "n_layers": layers, "n_heads": heads})
        counts[name] = sum(p.numel() for p in model.parameters())
    check_exercise_4_2(counts)
    assert "Exercise 4.2: correct!" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="gpt2-large"):
        check_exercise_4_2({**counts, "gpt2-large": counts["gpt2-medium"]})
    with pytest.raises(AssertionError, match="entry for 'gpt2-xl'"):
        check_exercise_4_2({k: v for k, v in counts.items() if k != "gpt2-xl"})


def test_exercise_4_3(capsys):
    cfg = {**GPT_CONFIG_124M, "context_length": 8, "emb_dim": 12, "n_heads": 2, "n_layers": 2, "vocab_size": 11}
    model = GPTModel(cfg)
    with pytest.raises(AssertionError, match="attention-weight dropout should be 0.2"):
        check_exercise_4_3(model)  # one drop_rate everywhere
    model.drop_emb.p = 0.1
    for block in model.trf_blocks:
        block.att.dropout.p, block.drop_shortcut.p = 0.2, 0.3
    check_exercise_4_3(model)
    assert "Exercise 4.3: correct!" in capsys.readouterr().out
