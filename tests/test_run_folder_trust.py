"""A run folder is data: its lock is taken before anything in it changes, every file of an earlier run moves
aside, and what decides about code (the trainer, trusting remote code) comes from the code and the session."""

from __future__ import annotations

import json

import pytest

import kernel_magics as km
from kernel_magics.config import settings
from kernel_magics.errors import SwiftUsageError
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.methods.registry import trainer_of
from kernel_magics.train.runtime import folders, start
from kernel_magics.train.runtime.run import Run
from kernel_magics.train.runtime.run_config import RunConfig

FAST = dict(batch_size=4, logging_steps=1, lora_r=8, lora_alpha=16, warmup_ratio=0.0, verbose=False, max_steps=2)
EARLIER = ("README.md", "rewards.py", "samples.jsonl", "events.jsonl", "launcher.log", "error-rank1.txt")


def _written_not_started(tiny_model, folder, monkeypatch) -> Run:
    """km.sft's run folder, written but not started (the lock stays held as for a run about to start)."""
    monkeypatch.setattr(start, "start_run", lambda run, inputs: (run, inputs))
    run, inputs = km.sft(str(tiny_model), str(tiny_dataset("sft")), output_dir=str(folder), **FAST)
    return run, inputs


def _earlier_run(folder) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"run_id": "old-run", "trainer": "x", "command": "sft"}))
    for name in EARLIER:
        (folder / name).write_text("from the earlier run")
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "trainer_state.json").write_text("{}")


def test_the_lock_is_held_before_an_earlier_runs_files_move_and_they_all_move(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "X"
    _earlier_run(folder)
    seen = []
    real = folders.set_aside_previous_run

    def watched(path):
        seen.append(((path / folders.LOCK_NAME).is_file(), folders.active_lock(path) is not None))
        return real(path)

    monkeypatch.setattr(folders, "set_aside_previous_run", watched)
    run, inputs = _written_not_started(tiny_model, folder, monkeypatch)
    try:
        assert seen == [(True, True)]  # the exclusive lock existed when the first file moved
        aside = [p for p in folder.iterdir() if p.name.startswith("previous-old-run-")]
        assert len(aside) == 1
        assert {p.name for p in aside[0].iterdir()} == {*EARLIER, "config.json", "checkpoint-2"}
        assert not any((folder / name).exists() for name in EARLIER)
        with pytest.raises(SwiftUsageError, match="already active"):  # held from write_run to the run's end
            folders.claim(folder)
        monkeypatch.undo()
        start.start_run(run, inputs)  # the run that wrote the folder takes its own lock over
        assert run.wait(300) == "finished", run.error
    finally:
        run._release()
    assert folders.active_lock(folder) is None


def test_a_failed_write_releases_the_lock(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "Y"

    def broken(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folders, "set_aside_previous_run", broken)
    with pytest.raises(OSError):
        km.sft(str(tiny_model), str(tiny_dataset("sft")), output_dir=str(folder), **FAST)
    assert folders.active_lock(folder) is None and not (folder / folders.LOCK_NAME).exists()


def test_a_loaded_run_trusts_remote_code_only_as_this_session_does(tmp_path, monkeypatch):
    folder = tmp_path / "Z"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"run_id": "z", "command": "sft", "trust_remote_code": True}))
    monkeypatch.setattr(settings, "trust_remote_code", False)
    assert Run.load(folder).config.trust_remote_code is False
    monkeypatch.setattr(settings, "trust_remote_code", True)
    assert Run.load(folder).config.trust_remote_code is True
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(SwiftUsageError, match=r"is not a run folder \(no readable config.json\)$"):
        Run.load(folder)


def test_the_trainer_comes_from_the_registry_not_the_folder(tiny_model, tmp_path, monkeypatch):
    sft = trainer_of(RunConfig(command="sft"))
    assert trainer_of(RunConfig.from_dict({"command": "sft", "trainer": "os:system"})) == sft
    with pytest.raises(SwiftUsageError, match=r"^unknown training method 'evil'") as info:
        trainer_of(RunConfig.from_dict({"command": "evil", "trainer": "os:system"}))
    assert "\n" not in str(info.value)
    run, inputs = _written_not_started(tiny_model, tmp_path / "W", monkeypatch)
    run.config.trainer = "a_module_that_does_not_exist:build"  # as an edited config.json would say
    monkeypatch.undo()
    start.start_run(run, inputs)
    assert run.wait(300) == "finished", run.error
