"""Shared pytest set-up."""
import pytest, torch

@pytest.fixture(autouse=True, scope='session')
def _one_thread():
    "The test problems are tiny: one torch thread is as fast, and far faster when the CPU is shared (restored after)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
