"""One reader of adapter folders and one base-compatibility check, used by training, export and serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel_magics.adapters import BASE_FIELDS, base_fields, base_mismatch, find_adapter, recorded_base, trained_base
from kernel_magics.errors import SwiftModelError


def _adapter(folder: Path, base: str, run_model_path: str | None = None) -> Path:
    """An adapter folder recording ``base`` (inside a run folder whose config names ``run_model_path``)."""
    adapter = folder / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": base}))
    if run_model_path is not None:
        (folder / "config.json").write_text(json.dumps({"model_path": run_model_path}))
    return adapter


def _model(folder: Path, **config) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_reading_an_adapter_folder(tmp_path):
    adapter = _adapter(tmp_path / "run", "some/hub-model")
    assert find_adapter(tmp_path / "run") == adapter == find_adapter(adapter)
    assert find_adapter(tmp_path) is None
    assert recorded_base(adapter) == "some/hub-model"
    assert trained_base(adapter) == "some/hub-model"  # no run config: what the adapter records
    model = _model(tmp_path / "m", model_type="qwen2", hidden_size=8)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"model_path": str(model)}))
    assert trained_base(adapter) == str(model)  # the run's resolved model folder wins


def test_one_field_list_compares_bases(tmp_path):
    qwen = _model(tmp_path / "qwen", model_type="qwen2", hidden_size=64, num_hidden_layers=2, vocab_size=100)
    same = _model(tmp_path / "qwen-copy", model_type="qwen2", hidden_size=64, num_hidden_layers=2, vocab_size=100)
    wider = _model(tmp_path / "wider", model_type="qwen2", hidden_size=64, intermediate_size=512, vocab_size=100)
    narrow = _model(tmp_path / "narrow", model_type="qwen2", hidden_size=64, intermediate_size=256, vocab_size=100)
    vlm = _model(tmp_path / "vlm", model_type="qwen2_vl", text_config={"hidden_size": 64})
    adapter = _adapter(tmp_path / "a", str(qwen))
    assert base_mismatch(adapter, qwen) is None and base_mismatch(adapter, same) is None
    mismatch = base_mismatch(_adapter(tmp_path / "b", str(wider)), narrow)
    assert (mismatch.field, mismatch.theirs, mismatch.ours) == ("intermediate_size", 512, 256)
    assert base_fields(vlm) == {"model_type": "qwen2_vl", "hidden_size": 64}
    assert base_mismatch(_adapter(tmp_path / "c", "/not/on/this/machine"), qwen) is None
    assert "intermediate_size" in BASE_FIELDS and "head_dim" in BASE_FIELDS


def test_training_export_and_serving_agree_on_a_foreign_adapter(tiny_model, tiny_llama, tmp_path):
    """A Llama adapter put on the Qwen2 model: all three refuse it, each with its own flag to fix."""
    from kernel_magics.export.loading import check_adapter_matches as export_check
    from kernel_magics.serve.engines.base import check_adapter
    from kernel_magics.train.methods.continuing import check_adapter_matches as training_check

    adapter = _adapter(tmp_path / "run", str(tiny_llama))
    with pytest.raises(SwiftModelError, match=r"\(model_type llama vs qwen2\); pass --model"):
        training_check(adapter, tiny_model)
    with pytest.raises(SwiftModelError, match=r"\(model_type=llama\).*\(model_type=qwen2\); pass the base"):
        export_check(tiny_model, adapter)
    with pytest.raises(SwiftModelError, match=r"\(model_type=llama\) but the served model has model_type=qwen2"):
        check_adapter("tuned", tmp_path / "run", tiny_model)
    assert check_adapter("tuned", _adapter(tmp_path / "ok", str(tiny_model)), tiny_model)[0].name == "adapter"
