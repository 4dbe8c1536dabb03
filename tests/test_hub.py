"""Model resolution: tiny aliases, local folders, the hub cache layout, offline failures."""

from __future__ import annotations

import shutil

import pytest

from kernel_magics import hub
from kernel_magics.errors import SwiftModelError


def _fake_hub_cache(root, repo_id: str, source) -> None:
    """Lay out ``source`` as huggingface_hub stores a downloaded snapshot."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / sha
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)


def test_tiny_alias_builds_in_cache(tiny_model):
    assert hub.resolve_model("tiny") == tiny_model


def test_local_folder(tiny_model, tmp_path):
    assert hub.resolve_model(str(tiny_model)) == tiny_model
    (tmp_path / "empty").mkdir()
    with pytest.raises(SwiftModelError, match="has no config.json"):
        hub.resolve_model(str(tmp_path / "empty"))


def test_hub_cache_layout(tiny_model, tmp_path, monkeypatch):
    _fake_hub_cache(tmp_path, "acme/tiny-chat", tiny_model)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    path = hub.resolve_model("acme/tiny-chat")
    assert (path / "config.json").is_file() and "snapshots" in str(path)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(path).eos_token == "<|im_end|>"


def test_download_is_idempotent_from_cache(tiny_model, tmp_path, capsys):
    _fake_hub_cache(tmp_path, "acme/tiny-chat", tiny_model)
    path = hub.download("acme/tiny-chat", cache_dir=str(tmp_path))
    assert "already downloaded" in capsys.readouterr().out
    assert (path / "model.safetensors").is_file()


def test_offline_missing_model_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(SwiftModelError, match="HF_HUB_OFFLINE=1 is set"):
        hub.resolve_model("acme/not-here")
    with pytest.raises(SwiftModelError, match="not in the local cache"):
        hub.resolve_model("acme/not-here", allow_download=False)


def test_bad_names():
    with pytest.raises(SwiftModelError, match="neither a local folder nor a hub id"):
        hub.resolve_model("no such model at all")
    with pytest.raises(SwiftModelError, match="not a hub id"):
        hub.download("nonsense")
