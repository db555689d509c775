"""fast_cpu_linear: oneDNN's kernel for inference-only linear layers, equal to F.linear, never in training."""

import contextlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import shared.transformer
from shared.fast_linear import OneDNNLinearMode, fast_cpu_linear, is_cpu_float32, onednn_linear_available
from shared.transformer import GPT_CONFIG_124M, GPTModel, generate_text_cached

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="this PyTorch build has no oneDNN")


def onednn_calls(fn) -> int:
    """How many times `fn()` ran oneDNN's linear kernel."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(event.count for event in prof.key_averages() if event.key == "mkldnn::_linear_pointwise")


@pytest.mark.parametrize("in_shape", [(7,), (1, 7), (1, 1, 7), (3, 5, 7), (2, 3, 4, 7)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("out_features", [1, 13, 3072])
def test_equals_f_linear(in_shape, bias, out_features):
    torch.manual_seed(0)
    layer = nn.Linear(7, out_features, bias=bias)
    x = torch.randn(in_shape)
    with torch.no_grad():
        expected = layer(x)
        with fast_cpu_linear():
            got = layer(x)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_inference_runs_on_onednn_and_training_does_not():
    torch.manual_seed(0)
    layer = nn.Linear(16, 32)
    x = torch.randn(2, 16)

    def inference():
        with torch.no_grad(), fast_cpu_linear():
            layer(x)

    def training_step():
        with fast_cpu_linear():
            layer(x).square().sum().backward()

    assert onednn_calls(inference) == 1
    assert onednn_calls(training_step) == 0  # autograd needs F.linear, so the mode stands aside
    assert layer.weight.grad is not None


def test_gradients_inside_the_mode_equal_those_outside():
    torch.manual_seed(0)
    layer = nn.Linear(16, 32)
    x = torch.randn(4, 16, requires_grad=True)
    layer(x).square().sum().backward()
    expected = (x.grad.clone(), layer.weight.grad.clone())
    x.grad, layer.weight.grad, layer.bias.grad = None, None, None
    with fast_cpu_linear():
        layer(x).square().sum().backward()
    assert torch.equal(x.grad, expected[0]) and torch.equal(layer.weight.grad, expected[1])


@needs_onednn
def test_other_dtypes_fall_back_to_f_linear():
    torch.manual_seed(0)
    layer = nn.Linear(8, 4).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = layer(x)
        with fast_cpu_linear():
            assert onednn_calls(lambda: layer(x)) == 0
            got = layer(x)
    assert torch.equal(got, expected)


def test_shape_mismatch_gives_f_linears_error():
    layer = nn.Linear(8, 4)
    with torch.no_grad(), fast_cpu_linear(), pytest.raises(RuntimeError, match="cannot be multiplied"):
        layer(torch.randn(2, 5))


def test_weights_changed_in_place_are_seen():
    """Nothing is cached between calls: a training step between two generations is not ignored."""
    torch.manual_seed(0)
    layer = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with torch.no_grad(), fast_cpu_linear():
        before = layer(x)
        layer.weight.mul_(2.0)
        layer.bias.zero_()
        after = layer(x)
    assert not torch.allclose(after, before)
    assert torch.allclose(after, F.linear(x, layer.weight), atol=1e-5)


# -- the decoding loop enters the mode only where it helps -------------------------------------------------------

TINY = {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 2}


def mode_calls(monkeypatch) -> list:
    """Patch OneDNNLinearMode to record every torch call it intercepts; return the record."""
    calls, original = [], OneDNNLinearMode.__torch_function__

    def counting(self, func, types, args=(), kwargs=None):
        calls.append(func)
        return original(self, func, types, args, kwargs)

    monkeypatch.setattr(OneDNNLinearMode, "__torch_function__", counting)
    return calls


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_decoding_another_dtype_skips_the_mode(monkeypatch, dtype):
    calls = mode_calls(monkeypatch)
    torch.manual_seed(0)
    model = GPTModel(TINY).to(dtype).eval()
    tokens = generate_text_cached(model, torch.tensor([[1, 2, 3]]), 4, context_size=16)
    assert tokens.shape == (1, 7) and calls == []  # no torch call paid the mode's toll


def test_a_model_off_the_cpu_is_not_cpu_float32():
    with torch.device("meta"):
        model = GPTModel(TINY)  # stands in for a GPU: parameters off the CPU
    assert not is_cpu_float32(model)
    assert is_cpu_float32(GPTModel(TINY)) and not is_cpu_float32(GPTModel(TINY).half())


@needs_onednn
def test_decoding_a_cpu_float32_model_goes_through_the_mode_with_the_same_tokens(monkeypatch):
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    prompt = torch.tensor([[5, 6, 7]])
    with monkeypatch.context() as patch:  # the reference: the mode switched off
        patch.setattr(shared.transformer, "fast_cpu_linear", contextlib.nullcontext)
        expected = generate_text_cached(model, prompt, 6, context_size=16)
    calls = mode_calls(monkeypatch)
    assert torch.equal(generate_text_cached(model, prompt, 6, context_size=16), expected)
    assert F.linear in calls
