"""Fixtures for every test: one torch CPU thread.

The tests use tiny tensors, for which one intra-op thread is fastest (no OpenMP
start-up and synchronisation costs) and does not fight other processes for cores.
The previous thread count is restored after each test.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
