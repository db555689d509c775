"""The exercise self-checks accept the worked solution, reject wrong answers, and pass over stubs."""

import pytest
import torch
from safetensors.torch import save_file

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
    check_exercise_5_1,
    check_exercise_5_2,
    check_exercise_5_3,
    check_exercise_5_4,
    check_exercise_5_5,
    check_exercise_5_6,
)
from shared.corpus import load_novel
from shared.dataloader import create_dataloader_v1
from shared.pretraining import calc_loss_loader, train_model_simple
from shared.tokenization import get_gpt2_tokenizer
from shared.transformer import GPT_CONFIG_124M, GPTModel, TransformerBlock
from shared.weights import gpt2_config, gpt2_parameter_map, load_gpt2_safetensors, load_weights_into_gpt


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
    batch_of_8 = create_dataloader_v1(raw_text, batch_size=8, max_length=8, stride=2, shuffle=False)
    with pytest.raises(AssertionError, match="use batch_size=4"):
        check_exercise_2_2(good_2, batch_of_8)
    other_text = create_dataloader_v1(raw_text[1000:], batch_size=4, max_length=8, stride=2, shuffle=False)
    with pytest.raises(AssertionError, match="first 8 tokens of raw_text"):
        check_exercise_2_2(good_2, other_text)


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
    with pytest.raises(AssertionError, match="attention-weight dropout should be drop_rate_attn = 0.2"):
        check_exercise_4_3(model)  # one drop_rate everywhere
    model.drop_emb.p = 0.1
    for block in model.trf_blocks:
        block.att.dropout.p, block.drop_shortcut.p = 0.2, 0.3
    check_exercise_4_3(model)
    assert "Exercise 4.3: correct!" in capsys.readouterr().out


# -- chapter 5 --------------------------------------------------------------------------------------

TOY_LOGITS = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
TINY_GPT = {"vocab_size": 50257, "context_length": 32, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
            "drop_rate": 0.0, "qkv_bias": False}


def test_untouched_chapter_5_exercises_pass(capsys):
    check_exercise_5_1(None)
    check_exercise_5_2(None, None)
    check_exercise_5_3(None)
    check_exercise_5_4("model_and_optimizer.pth", None, None, None, None)
    check_exercise_5_5(None, None, None, "model.safetensors", None, None)
    check_exercise_5_6(None)
    assert capsys.readouterr().out.count("not attempted yet") == 6


def test_exercise_5_1(capsys):
    pizza_counts = {}
    for temperature in (1, 0.1, 5):
        torch.manual_seed(123)
        probas = torch.softmax(TOY_LOGITS / temperature, dim=0)
        samples = torch.tensor([torch.multinomial(probas, num_samples=1).item() for _ in range(1_000)])
        pizza_counts[temperature] = int((samples == 6).sum())
    assert pizza_counts == {1: 0, 0.1: 0, 5: 32}  # the book's counts
    check_exercise_5_1(pizza_counts)
    assert "Exercise 5.1: correct!" in capsys.readouterr().out

    with pytest.raises(AssertionError, match="not a probability"):
        check_exercise_5_1({1: 0, 0.1: 0, 5: 0.032})
    with pytest.raises(AssertionError, match="at temperature 1, 'pizza' has probability"):
        check_exercise_5_1({1: 32, 0.1: 0, 5: 0})  # temperatures mixed up
    with pytest.raises(AssertionError, match="at temperature 5"):
        check_exercise_5_1({1: 0, 0.1: 0, 5: 239})  # counted "forward"
    with pytest.raises(AssertionError, match="one entry per temperature"):
        check_exercise_5_1({1: 0, 5: 32})


def test_exercise_5_2(capsys):
    check_exercise_5_2({"temperature": 0.1, "top_k": None}, {"temperature": 5.0, "top_k": None})
    check_exercise_5_2({"temperature": 1.0, "top_k": 1}, {"temperature": 2.0})
    assert capsys.readouterr().out.count("Exercise 5.2: correct!") == 2

    with pytest.raises(AssertionError, match="greedy decoding, not sampling"):
        check_exercise_5_2({"temperature": 0.0}, {"temperature": 5.0})
    with pytest.raises(AssertionError, match="at least 95%"):
        check_exercise_5_2({"temperature": 1.0, "top_k": 3}, {"temperature": 5.0})
    with pytest.raises(AssertionError, match="top_k=3 allows only 3 candidates"):
        check_exercise_5_2({"temperature": 0.1}, {"temperature": 5.0, "top_k": 3})
    with pytest.raises(AssertionError, match="Raise the temperature"):
        check_exercise_5_2({"temperature": 0.1}, {"temperature": 1.0})
    with pytest.raises(AssertionError, match="decoding settings are temperature, top_k, top_p"):
        check_exercise_5_2({"temperature": 0.1, "topk": 1}, {"temperature": 5.0})


def test_exercise_5_3(capsys):
    check_exercise_5_3([{"temperature": 0.0, "top_k": None}, {"temperature": 1.4, "top_k": 1}])
    assert "Exercise 5.3: correct!" in capsys.readouterr().out

    with pytest.raises(AssertionError, match="different tokens with different seeds"):
        check_exercise_5_3([{"temperature": 0.0}, {"temperature": 1.0, "top_k": 2}])
    with pytest.raises(AssertionError, match="less random, not deterministic"):
        check_exercise_5_3([{"temperature": 0.0}, {"temperature": 0.05}])  # nearly greedy is not deterministic
    with pytest.raises(AssertionError, match="with temperature > 0"):
        check_exercise_5_3([{"temperature": 0.0}, {"temperature": 0.0, "top_k": 5}])
    with pytest.raises(AssertionError, match="at least two"):
        check_exercise_5_3([{"temperature": 0.0}])


@pytest.fixture(scope="module")
def short_loader(raw_text):
    torch.manual_seed(123)
    return create_dataloader_v1(raw_text[:2_000], batch_size=4, max_length=32, stride=32, shuffle=True)


def train_tiny(model, optimizer, loader, num_epochs):
    return train_model_simple(model, loader, loader, optimizer, "cpu", num_epochs=num_epochs, eval_freq=5,
                              eval_iter=2, start_context="Every effort", tokenizer=get_gpt2_tokenizer())[0]


@pytest.fixture(scope="module")
def tiny_checkpoint(short_loader, tmp_path_factory):
    """A tiny GPT trained a few epochs on a short text, saved with its optimizer as in section 5.4."""
    torch.manual_seed(123)
    model = GPTModel(TINY_GPT)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    train_tiny(model, optimizer, short_loader, num_epochs=3)
    path = tmp_path_factory.mktemp("ch05") / "model_and_optimizer.pth"
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path)
    return path


def resume(path, load_model=True, load_optimizer=True):
    checkpoint = torch.load(path, weights_only=True)
    model = GPTModel(TINY_GPT)
    if load_model:
        model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    if load_optimizer:
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    return model, optimizer


def test_exercise_5_4(tiny_checkpoint, short_loader, capsys):
    model, optimizer = resume(tiny_checkpoint)
    losses = train_tiny(model, optimizer, short_loader, num_epochs=1)
    check_exercise_5_4(tiny_checkpoint, model, optimizer, losses, short_loader)
    assert "Exercise 5.4: correct!" in capsys.readouterr().out

    model, optimizer = resume(tiny_checkpoint, load_optimizer=False)
    losses = train_tiny(model, optimizer, short_loader, num_epochs=1)
    with pytest.raises(AssertionError, match="its state was not loaded"):
        check_exercise_5_4(tiny_checkpoint, model, optimizer, losses, short_loader)

    model, optimizer = resume(tiny_checkpoint, load_model=False)
    losses = train_tiny(model, optimizer, short_loader, num_epochs=1)
    with pytest.raises(AssertionError, match="did not start from the checkpoint"):
        check_exercise_5_4(tiny_checkpoint, model, optimizer, losses, short_loader)

    model, optimizer = resume(tiny_checkpoint)
    losses = train_tiny(model, optimizer, short_loader, num_epochs=2)
    with pytest.raises(AssertionError, match="num_epochs=1"):
        check_exercise_5_4(tiny_checkpoint, model, optimizer, losses, short_loader)

    model, optimizer = resume(tiny_checkpoint)
    other = GPTModel(TINY_GPT)  # an optimizer that is not the model's
    with pytest.raises(AssertionError, match="does not hold this model's parameters"):
        check_exercise_5_4(tiny_checkpoint, other, optimizer, [1.0], short_loader)


@pytest.fixture(scope="module")
def gpt2_layout_file(tmp_path_factory):
    """A random GPTModel's weights written in GPT-2's (Hugging Face's) layout, and the model's config."""
    cfg = {**TINY_GPT, "qkv_bias": True}
    torch.manual_seed(5)
    model = GPTModel(cfg)
    tensors = {name: target.join([p.detach() for p in target.params])
               for name, target in gpt2_parameter_map(model).items()}
    path = tmp_path_factory.mktemp("gpt2") / "model.safetensors"
    save_file({name: t.contiguous() for name, t in tensors.items()}, path)
    return path, cfg


def test_exercise_5_5(gpt2_layout_file, raw_text, capsys):
    path, cfg = gpt2_layout_file
    train_loader = create_dataloader_v1(raw_text[:2_000], batch_size=4, max_length=32, stride=32, shuffle=False)
    val_loader = create_dataloader_v1(raw_text[2_000:3_000], batch_size=4, max_length=32, stride=32, shuffle=False)
    model = GPTModel(cfg)
    load_weights_into_gpt(model, load_gpt2_safetensors(path))
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, "cpu")
        val_loss = calc_loss_loader(val_loader, model, "cpu")
    check_exercise_5_5(train_loss, val_loss, model, path, train_loader, val_loader)
    assert "Exercise 5.5: correct!" in capsys.readouterr().out

    with pytest.raises(AssertionError, match="val_loss is"):
        check_exercise_5_5(train_loss, val_loss + 0.05, model, path, train_loader, val_loader)
    with pytest.raises(AssertionError, match="swapped"):
        check_exercise_5_5(val_loss, train_loss, model, path, train_loader, val_loader)
    with pytest.raises(AssertionError, match="differs from the weights"):
        check_exercise_5_5(train_loss, val_loss, GPTModel(cfg), path, train_loader, val_loader)  # not loaded
    with pytest.raises(AssertionError, match="does not fit the weights"):
        check_exercise_5_5(train_loss, val_loss, GPTModel(TINY_GPT), path, train_loader, val_loader)  # no qkv bias


def test_exercise_5_6(capsys):
    counts = {}
    for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"):
        with torch.device("meta"):
            model = GPTModel(gpt2_config(name))
        counts[name] = sum(p.numel() for p in model.parameters())
    check_exercise_5_6(counts)
    tied = {name: count - 50257 * gpt2_config(name)["emb_dim"] for name, count in counts.items()}
    check_exercise_5_6(tied)
    assert capsys.readouterr().out.count("Exercise 5.6: correct!") == 2

    with pytest.raises(AssertionError, match="gpt2-medium"):
        check_exercise_5_6({**counts, "gpt2-medium": counts["gpt2-medium"] - 24 * 3 * 1024})  # qkv_bias=False
    with pytest.raises(AssertionError, match="entry for 'gpt2'"):
        check_exercise_5_6({k: v for k, v in counts.items() if k != "gpt2"})
