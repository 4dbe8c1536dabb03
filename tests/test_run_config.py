"""``config.json`` has one reader and writer (``RunConfig``): a run folder written before the file carried a
schema number still loads, resumes and exports as it did, and a key this code does not know is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics.config import settings
from kernel_magics.errors import SwiftUsageError
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.methods.registry import method_of
from kernel_magics.train.runtime.run import Run
from kernel_magics.train.runtime.run_config import SCHEMA, RunConfig
from kernel_magics.train.script import to_script

# config.json as the code wrote it before the schema key (an SFT run; paths are filled in by _old_config)
OLD_SFT = Path(__file__).parent / "run_configs" / "sft_schema1.json"
FUTURE = {"future_knob": {"kept": [1, 2]}}


def _old_config(**values) -> dict:
    text = OLD_SFT.read_text().replace("DATASET", str(tiny_dataset("sft")))
    return {**json.loads(text), **values}


def test_an_old_config_reads_into_fields_and_writes_back_what_it_read(tmp_path, tiny_model):
    old = _old_config(model_path=str(tiny_model), **FUTURE)
    assert "schema" not in old
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = RunConfig.read(tmp_path)
    assert (config.command, config.kind, config.method, config.max_steps) == ("sft", "sft", "lora", 2)
    assert (config.plan.method, config.plan.dtype, config.plan.batch_size) == ("lora", "bf16", 2)
    assert config.arguments["lora_r"] == 8 and config.data["rows"] == 240 and config.dataset_copy is None
    assert config.extra == FUTURE and config.loss is None and method_of(config).name == "sft"
    config.write(tmp_path)
    again = json.loads((tmp_path / "config.json").read_text())
    assert again == {**old, "schema": SCHEMA}  # every key kept, the unknown one too, and the schema added
    assert RunConfig.read(tmp_path) == config
    assert config["plan"]["dtype"] == "bf16" and config.get("future_knob") == FUTURE["future_knob"]  # notebooks


def test_method_keys_become_fields_and_missing_ones_get_defaults():
    recorded = {"run_id": "g", "command": "grpo", "kind": "grpo", "method": "qlora", "plan": {"device": "cuda:0"}}
    method_keys = {"adapter": None, "loss": "grpo", "beta": 0.0, "rewards": ["digits"], "reward_file": "rewards.py"}
    grpo = RunConfig.from_dict({**recorded, **method_keys})
    assert grpo.rewards == ["digits"] and grpo.reward_file == "rewards.py" and grpo.beta == 0.0
    assert grpo.extra == {"adapter": None} and grpo.plan.device == "cuda:0" and grpo.plan.method == "qlora"
    assert RunConfig.from_dict(grpo.to_dict()) == grpo
    vision = RunConfig.from_dict({"command": "sft", "vision": {"train_vision": False}})
    assert method_of(vision).trainer.endswith("vlm:build_trainer") and vision.max_steps == 0 and vision.arguments == {}
    bare = RunConfig.from_dict({"run_id": "x", "plan": "not a plan", "arguments": None})
    assert bare.plan.device == "cpu" and bare.arguments == {} and "vision" not in bare.to_dict()


def test_a_folder_without_a_readable_config_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(SwiftUsageError, match=r"is not a run folder \(no readable config.json\)$"):
        RunConfig.read(tmp_path)


def test_an_old_run_folder_resumes_and_exports_as_before(tiny_model, workspace, tmp_path, monkeypatch):
    args = dict(method="lora", lora_r=8, lora_alpha=16, batch_size=2, logging_steps=1, save_steps=1, seed=3)
    run = km.sft(str(tiny_model), str(tiny_dataset("sft")), max_steps=2, where="kernel", verbose=False, **args)
    assert run.wait(300) == "finished", run.error
    written = json.loads((run.output_dir / "config.json").read_text())
    old = _old_config(
        run_id=run.name, run_uid=run.run_uid, model_path=str(tiny_model), model=str(tiny_model), max_steps=4,
        arguments={**written["arguments"], "max_steps": 4}, **FUTURE,
    )  # fmt: skip
    (run.output_dir / "config.json").write_text(json.dumps(old))
    monkeypatch.setattr(settings, "trust_remote_code", False)
    loaded = Run.load(run.output_dir)
    assert loaded.status == "stopped" and loaded.config.trust_remote_code is False  # 2 of 4 steps, a checkpoint
    script = to_script(loaded, tmp_path / "scripts", kind="shell").read_text()
    assert "--max-steps 4" in script and "--lora-r 8" in script and "--save-steps 1" in script
    assert loaded.resume().wait(300) == "finished", loaded.error
    assert loaded.metrics["step"].tolist() == [1, 2, 3, 4]
    assert json.loads((run.output_dir / "config.json").read_text()) == old  # resuming leaves the file as it was


def test_samples_have_one_writer_and_one_reader_that_skips_a_half_written_line(tmp_path):
    from kernel_magics.train.runtime.samples import SAMPLES_FILE, publish_samples, read_samples

    run = Run(tmp_path, RunConfig(run_id="s", kind="grpo"))
    seen = []
    run.subscribe(lambda event, payload: seen.append((event, payload["step"])))
    assert read_samples(tmp_path) == []
    for step in (1, 2):
        publish_samples(run, "grpo_samples", {"step": step, "samples": [{"prompt": "p", "reward": 0.5}]})
    with open(tmp_path / SAMPLES_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"step": 3, "samp')  # the run's process is writing it
    assert [entry["step"] for entry in read_samples(tmp_path)] == [1, 2]
    assert run.samples["step"] == 2 and seen == [("grpo_samples", 1), ("grpo_samples", 2)]
