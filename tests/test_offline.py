"""No network unless asked: the suite-wide guard works, both offline variables are honoured, and
km.estimate of a hub id reads the local cache before thinking of the Hub."""

from __future__ import annotations

import json
import socket

import pytest

import kernel_magics as km
from kernel_magics.errors import SwiftModelError


def test_the_guard_refuses_and_records_a_connection_beyond_this_machine(network_attempts):
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="never touch the network"):
        sock.connect(("203.0.113.7", 443))  # TEST-NET-3: documentation only
    assert network_attempts == ["('203.0.113.7', 443)"]
    network_attempts.clear()  # tried on purpose: this test must not fail for it
    with socket.socket() as server:  # loopback stays open
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


@pytest.fixture()
def online(monkeypatch):
    """As if no offline variable were set (the suite sets HF_HUB_OFFLINE=1 for everything else)."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def _cached_config(cache, repo: str, config: dict) -> None:
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "config.json").write_text(json.dumps(config))


def test_estimate_of_a_cached_hub_id_uses_the_cache_without_the_network(online, tiny_model, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _cached_config(tmp_path / "hub", "someorg/cached-model", json.loads((tiny_model / "config.json").read_text()))
    estimate = km.estimate("someorg/cached-model", max_length=128, batch_size=1)
    assert estimate.totals["lora"] > 0


def test_transformers_offline_is_honoured_too(online, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from kernel_magics.hub import is_offline

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert is_offline()
    with pytest.raises(SwiftModelError, match="no config.json in the local cache"):
        km.estimate("someorg/not-cached", max_length=128, batch_size=1)
