"""Shared test configuration: hypothesis profiles and the real-GPU marker."""

import os

import dyncore  # noqa: F401  first: it selects the CUDA simulator before anything imports Numba
import pytest
import torch
from hypothesis import HealthCheck, settings

# Numba compiles on first call and the CUDA simulator is slow: no per-example deadline.
settings.register_profile(
    "default", deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci", parent=settings.get_profile("default"), max_examples=15, derandomize=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

HAS_GPU = torch.cuda.is_available()

# float32 references on a GPU must be float32: cuDNN convolutions default to TF32 (10-bit
# mantissa), which alone puts them 1e-3 away from an exact float32 kernel.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a real CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(skip)
