"""Shared, expensive fixtures: one local Ray cluster per test session.

Tests that need Ray take `ray_local`; it starts an embedded cluster once (the
same code path `asymptote launch` uses without `--address`) and shuts it down
at the end of the session.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if os.environ.get("ASYMPTOTE_FULL_TESTS") != "1":
        # builds two more bases and a two-node cluster: 20+ minutes on 2 cores, over CI's suite budget
        skip_full = pytest.mark.skip(reason="long end-to-end test: set ASYMPTOTE_FULL_TESTS=1")
        for item in items:
            if "full" in item.keywords:
                item.add_marker(skip_full)
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_local():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=True, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory):
    """A random-init tiny Qwen2 + the project's tokenizer, saved HF-style."""
    from rl.base.config import ArchConfig
    from rl.base.model import build_model
    from rl.base.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tiny_random_model")
    tok = build_tokenizer()
    model = build_model(ArchConfig(), tok, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
