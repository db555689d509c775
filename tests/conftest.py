"""Shared pytest set-up: a deterministic hypothesis profile for CI, and a one-thread fixture."""

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread while a module runs: tiny models gain nothing from two, and on a busy machine
    (or beside processes a test launched) the threads keep waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
