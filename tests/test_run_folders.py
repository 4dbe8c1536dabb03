"""Two runs never mix in one folder: leftovers moved aside, checkpoints owned, the lock exclusive, the
final adapter published whole."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics.errors import SwiftUsageError
from kernel_magics.testing import tiny_dataset

# where="kernel": these tests stop runs at an exact step from a metrics callback, which only a run in this
# process sees without delay (a run in its own process is stopped from its mirrored events, a step or more later)
FAST = dict(
    batch_size=4, logging_steps=1, lora_r=8, lora_alpha=16, warmup_ratio=0.0, verbose=False, lr=2e-3, where="kernel"
)


def _start(model, folder, **kwargs):
    return km.sft(str(model), str(tiny_dataset("sft")), output_dir=str(folder), **{**FAST, **kwargs})


def _stop_at(run, step):
    """Stop ``run`` once, when it logs ``step`` (a resumed run that logs it again goes on)."""
    asked = []

    def listener(event, payload):
        if event == "metrics" and payload.get("step") == step and not asked:
            asked.append(step)
            run.stop()

    run.subscribe(listener)


def test_a_second_run_in_a_folder_moves_the_first_aside_and_resumes_only_from_its_own(tiny_model, tmp_path):
    folder = tmp_path / "X"
    first = _start(tiny_model, folder, max_steps=8, save_steps=4)
    assert first.wait(300) == "finished", first.error
    assert [p.name for p in first.checkpoints] == ["checkpoint-4", "checkpoint-8"]

    second = _start(tiny_model, folder, max_steps=6, save_steps=100)
    moved = [n for n in second.notes if "held another run's files" in n]
    assert len(moved) == 1 and len(moved[0]) <= 300
    aside = [p for p in folder.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and {p.name for p in aside[0].iterdir()} >= {"checkpoint-4", "checkpoint-8", "adapter"}
    assert not (folder / "checkpoint-8").exists()

    _stop_at(second, 2)
    assert second.wait(300) == "stopped", second.error
    assert [p.name for p in second.checkpoints] == ["checkpoint-3"]
    # another run's checkpoint dropped into the folder is not ours: resume() ignores it
    (folder / "checkpoint-5").mkdir()
    (aside[0] / "checkpoint-8" / "trainer_state.json").replace(folder / "checkpoint-5" / "trainer_state.json")
    second.resume()
    assert second.wait(300) == "finished", second.error
    steps = list(second.metrics["step"])
    assert steps == list(range(1, 7)), steps
    assert "checkpoint-5" not in [p.name for p in second.checkpoints]
    last = second.checkpoints[-1]  # the trainer saves at the last step too
    marker = json.loads((last / "kernel_magics_run.json").read_text())
    assert last.name == "checkpoint-6" and marker["run_uid"] == second.config.run_uid != first.config.run_uid


def test_a_checkpoint_whose_state_does_not_parse_is_skipped_with_a_note(tiny_model, tmp_path):
    run = _start(tiny_model, tmp_path / "run", max_steps=8, save_steps=2)
    _stop_at(run, 3)
    assert run.wait(300) == "stopped", run.error
    assert [p.name for p in run.checkpoints] == ["checkpoint-2", "checkpoint-4"]
    (run.output_dir / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "log_hi')  # cut short
    run.resume()
    assert run.wait(300) == "finished", run.error
    assert any("skipped checkpoint-4" in n and "does not parse" in n for n in run.notes), run.notes
    assert any("resuming" in n and "checkpoint-2" in n for n in run.notes)
    assert list(run.metrics["step"]) == list(range(1, 9))


def test_a_failed_final_save_leaves_the_last_adapter_whole(tiny_model, tmp_path, monkeypatch):
    run = _start(tiny_model, tmp_path / "run", max_steps=6, save_steps=100)
    _stop_at(run, 2)
    assert run.wait(300) == "stopped", run.error
    saved = {p.name: p.read_bytes() for p in run.adapter_dir.iterdir() if p.is_file()}
    assert "adapter_model.safetensors" in saved

    from transformers import PreTrainedTokenizerBase

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full)
    run.resume()
    assert run.wait(300) == "failed" and "No space left" in run.error
    assert {p.name: p.read_bytes() for p in run.adapter_dir.iterdir() if p.is_file()} == saved


def _claim_when_told(folder: str, barrier, results) -> None:
    from kernel_magics.train.runtime.folders import claim

    barrier.wait()
    try:
        claim(Path(folder))
        results.put("claimed")
    except SwiftUsageError as exc:
        results.put(str(exc))


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_cannot_both_take_a_run_folder(tmp_path, attempt):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_claim_when_told, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(60)
    refused = [o for o in outcomes if o != "claimed"]
    assert len(refused) == 1 and "is active in" in refused[0], outcomes
