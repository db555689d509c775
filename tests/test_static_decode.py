"""The fixed-shape decoder (shared/static_decode.py): the same tokens as the book's loop, one graph for every step."""

import pytest
import torch
from torch._dynamo.utils import counters

import shared.transformer as transformer
from shared.llama3 import Llama3Model
from shared.static_decode import StaticDecoder, decode_static, static_decoding_applies
from shared.transformer import GPTModel, generate_text_cached, generate_text_simple

CFG = {"vocab_size": 97, "context_length": 12, "emb_dim": 32, "n_heads": 4, "n_layers": 2, "drop_rate": 0.1,
       "qkv_bias": True}


def greedy(logits):
    return torch.argmax(logits, dim=-1, keepdim=True)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPTModel(CFG).eval()


@pytest.mark.parametrize("new_tokens", [1, 5, 25])  # 25: well past the 12-token context, the window slides
def test_the_tokens_are_the_book_loops(model, new_tokens):
    prompt = torch.randint(0, CFG["vocab_size"], (3, 4))
    expected = generate_text_simple(model, prompt, new_tokens, CFG["context_length"])
    assert torch.equal(decode_static(model, prompt, new_tokens, CFG["context_length"], greedy, compile=False),
                       expected)
    shorter = decode_static(model, prompt, new_tokens, 6, greedy, compile=False)  # a window below the context
    assert torch.equal(shorter, generate_text_simple(model, prompt, new_tokens, 6))


def test_each_step_gives_the_full_forward_passes_last_logits(model):
    ids = torch.randint(0, CFG["vocab_size"], (2, 9))
    decoder = StaticDecoder(model, batch_size=2, max_length=CFG["context_length"])
    with torch.no_grad():
        first = decoder(ids[:, :5], torch.arange(5))  # the prompt at once, then one token per call
        torch.testing.assert_close(first, model(ids[:, :5])[:, -1])
        for t in range(5, 9):
            step = decoder(ids[:, t : t + 1], torch.tensor([t]))
            torch.testing.assert_close(step, model(ids[:, : t + 1])[:, -1], rtol=1e-5, atol=1e-5)


def test_the_one_token_step_compiles_as_one_graph_and_keeps_the_tokens(model, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def compile_without_codegen(module, **options):  # dynamo's whole-graph capture, without a C++ build
        compiled.append(options)
        return real_compile(module, **{**options, "backend": "aot_eager"})

    monkeypatch.setattr(torch, "compile", compile_without_codegen)
    torch._dynamo.reset()
    counters.clear()
    prompt = torch.randint(0, CFG["vocab_size"], (1, 3))
    tokens = decode_static(model, prompt, 20, CFG["context_length"], greedy)  # fullgraph=True: no graph breaks
    assert torch.equal(tokens, generate_text_simple(model, prompt, 20, CFG["context_length"]))
    assert compiled == [{"mode": None, "fullgraph": True}]  # CUDA graphs only on a CUDA device
    assert counters["stats"]["unique_graphs"] == 1  # one graph for all 20 steps: nothing recompiles


def test_it_stops_when_the_picker_says_so(model):
    calls = []

    def three_then_stop(logits):
        calls.append(logits.shape)
        return None if len(calls) > 3 else greedy(logits)

    tokens = decode_static(model, torch.zeros(2, 2, dtype=torch.long), 10, CFG["context_length"], three_then_stop,
                           compile=False)
    assert tokens.shape == (2, 5) and calls == [(2, CFG["vocab_size"])] * 4


def test_the_chapter_4_loop_hands_over_exactly_where_it_applies(model, monkeypatch):
    assert not static_decoding_applies(model, None)  # a CPU model keeps the dynamic cache and oneDNN
    assert not static_decoding_applies(model.train(), None) and not model.eval().training
    llama = Llama3Model({"vocab_size": 97, "context_length": 12, "emb_dim": 32, "n_heads": 4, "n_layers": 1,
                         "hidden_dim": 64, "n_kv_groups": 2, "rope_base": 10_000.0, "dtype": torch.float32})
    assert not static_decoding_applies(llama, None)
    assert not static_decoding_applies(model, torch.tensor([0, 2]))  # padded batches: LeftPadding's path

    used = []
    monkeypatch.setattr(transformer, "static_decoding_applies", lambda m, pad: True)
    monkeypatch.setattr(transformer, "decode_static", lambda *args: used.append(args) or args[1])
    prompt = torch.zeros(1, 3, dtype=torch.long)
    generate_text_cached(model, prompt, 4, CFG["context_length"])
    assert len(used) == 1 and used[0][0] is model and used[0][2:4] == (4, CFG["context_length"])


def test_sizes_outside_the_model_are_refused_with_the_limit(model):
    with pytest.raises(ValueError, match="max_length=13 must be between 1 and the model's context_length=12"):
        StaticDecoder(model, batch_size=1, max_length=13)
    with pytest.raises(ValueError, match="context_size=20 exceeds the model's context_length=12"):
        decode_static(model, torch.zeros(1, 2, dtype=torch.long), 3, 20, greedy)
