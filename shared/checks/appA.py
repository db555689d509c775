"""Checks for appendix A's exercises (PyTorch): a usable device, package versions, a parameter count, a matmul."""

from __future__ import annotations

from importlib.metadata import version

import torch

from shared.checks.common import correct, is_count, not_attempted

APPENDIX_A_PACKAGES = ("torch", "numpy", "matplotlib", "tiktoken", "tqdm")


def _available_device_types() -> list[str]:
    available = ["cpu"]
    if torch.cuda.is_available():
        available.append("cuda")
    if torch.backends.mps.is_available():
        available.append("mps")
    return available


def check_exercise_A_1(device) -> None:
    """Exercise A.1: a device this machine's PyTorch can compute on, as a torch.device (or its name)."""
    if not_attempted("A.1", device):
        return
    available = _available_device_types()
    if isinstance(device, str):
        if device.split(":")[0].lower() == "gpu":
            raise AssertionError(
                "PyTorch has no device called 'gpu': an NVIDIA GPU is 'cuda', an Apple-silicon GPU is 'mps'. "
                f"This machine offers {available}."
            )
        try:
            device = torch.device(device)
        except RuntimeError as err:
            raise AssertionError(f"{device!r} is not a device name PyTorch knows ({err}); try 'cpu'") from err
    assert isinstance(device, torch.device), (
        f"the answer is a {type(device).__name__}; give a torch.device, e.g. torch.device('cpu')"
    )
    assert device.type in available, (
        f"this machine cannot compute on {device.type!r}: torch.cuda.is_available() and "
        f"torch.backends.mps.is_available() say it offers {available}. Pick one of those."
    )
    torch.ones(2, device=device).sum().item()  # fails loudly if the device is there but unusable
    correct("A.1", "a tensor can live and be computed on this device.")


def check_exercise_A_2(versions) -> None:
    """Exercise A.2: the installed version of each package in APPENDIX_A_PACKAGES, read by the reader's code."""
    if not_attempted("A.2", versions):
        return
    assert isinstance(versions, dict), (
        f"the answer is a {type(versions).__name__}; give a dict from package name to version string, "
        "e.g. {'torch': '2.13.0', ...}"
    )
    missing = [name for name in APPENDIX_A_PACKAGES if name not in versions]
    assert not missing, f"the dict has no entry for {missing}: give one for each of {list(APPENDIX_A_PACKAGES)}"
    for name in APPENDIX_A_PACKAGES:
        installed = version(name)
        got = str(versions[name])
        # A build tag after "+" (torch's "+cpu", "+cu126") may or may not be there, depending on how it was read.
        assert got.split("+")[0] == installed.split("+")[0], (
            f"{name}: the answer says {got!r}, but the installed version is {installed!r}. Read it with "
            "importlib.metadata.version(name)."
        )
    correct("A.2", f"all {len(APPENDIX_A_PACKAGES)} packages are installed; compare them with requirements.txt.")


def check_exercise_A_3(num_params) -> None:
    """Exercise A.3: the number of parameters of the appendix's NeuralNetwork(2, 2) (hidden layers of 30 and 20)."""
    if not_attempted("A.3", num_params):
        return
    sizes = [(2, 30), (30, 20), (20, 2)]  # (inputs, outputs) of the three nn.Linear layers
    weights = sum(n_in * n_out for n_in, n_out in sizes)
    biases = sum(n_out for _, n_out in sizes)
    assert is_count(num_params), f"the answer is {num_params!r}; give a whole number of parameters"
    num_params = int(num_params)
    assert num_params != weights, (
        f"{weights} counts the weights only: every nn.Linear layer also has one bias per output unit"
    )
    assert num_params == weights + biases, (
        f"the answer is {num_params:,}, but NeuralNetwork(2, 2) has a different number of parameters. Its layers "
        "are Linear(2, 30), Linear(30, 20) and Linear(20, 2); each has inputs x outputs weights plus one bias per "
        "output (ReLU has none). Or count them: sum(p.numel() for p in model.parameters())"
    )
    correct("A.3", f"{weights} weights and {biases} biases.")


def check_exercise_A_4(matmul_by_dots) -> None:
    """Exercise A.4: a matrix product computed one dot product per output element, equal to a @ b."""
    if not_attempted("A.4", matmul_by_dots):
        return
    assert callable(matmul_by_dots), "the answer should be a function: (a, b) -> the matrix product of a and b"
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 7, generator=generator), torch.rand(7, 3, generator=generator)
    result = matmul_by_dots(a, b)
    assert isinstance(result, torch.Tensor), f"the function returned a {type(result).__name__}; return a tensor"
    assert tuple(result.shape) == (5, 3), (
        f"for a of shape (5, 7) and b of shape (7, 3) the result has shape {tuple(result.shape)}; a @ b has (5, 3): "
        "one entry per row of a and column of b"
    )
    assert torch.allclose(result.to(a.dtype), a @ b, atol=1e-5), (
        "the result differs from a @ b: entry (i, j) is the dot product of row i of a and column j of b, "
        "torch.dot(a[i], b[:, j])"
    )
    correct("A.4", "the same numbers as a @ b, one Python call per entry instead of one call in all.")
