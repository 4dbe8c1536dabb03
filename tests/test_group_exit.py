"""A process group's end: a rank dying after rank 0 published the adapter is a warning, not a failed run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from kernel_magics.errors import SwiftError
from kernel_magics.train.runtime import group
from kernel_magics.train.runtime.distributed import FINISHED_FILE
from kernel_magics.train.runtime.run import Run
from kernel_magics.train.runtime.run_config import RunConfig

# stands in for torchrun: rank 0's work (the adapter, then the marker) and a rank aborting at exit
FAKE_GROUP = textwrap.dedent(
    """
    import json, os, pathlib, sys
    folder = pathlib.Path(sys.argv[1])
    if sys.argv[2] == "published":
        (folder / "adapter").mkdir()
        (folder / "adapter" / "adapter_config.json").write_text("{{}}")
        (folder / "{marker}").write_text(json.dumps({{"adapter": str(folder / "adapter"), "step": 3}}))
    sys.stdout.flush()
    os.abort()  # "terminate called without an active exception": SIGABRT
    """
).format(marker=FINISHED_FILE)


def _group_run(folder: Path, monkeypatch: pytest.MonkeyPatch, outcome: str) -> Run:
    folder.mkdir()
    run = Run(folder, RunConfig(run_id="r", arguments={"num_processes": 2}))  # planned for the CPU
    monkeypatch.setattr(
        group,
        "launch_command",
        lambda args, folder, port, resume: [sys.executable, "-c", FAKE_GROUP, str(folder), outcome],
    )
    return run


def test_a_rank_aborting_after_the_adapter_is_published_leaves_a_finished_run_with_a_warning(tmp_path, monkeypatch):
    run = _group_run(tmp_path / "run", monkeypatch, "published")
    group.train_group(run, None)  # no exception: the run is complete
    warnings = [n for n in run.notes if n.startswith("warning:")]
    assert len(warnings) == 1 and "signal 6" in warnings[0] and "the run is complete" in warnings[0]


def test_a_rank_aborting_before_the_adapter_is_published_fails_the_run(tmp_path, monkeypatch):
    run = _group_run(tmp_path / "run", monkeypatch, "training")
    with pytest.raises(SwiftError, match="signal 6"):
        group.train_group(run, None)


def test_a_marker_left_by_an_earlier_start_does_not_count(tmp_path, monkeypatch):
    run = _group_run(tmp_path / "run", monkeypatch, "training")
    (run.adapter_dir).mkdir()
    (run.output_dir / FINISHED_FILE).write_text(f'{{"adapter": "{run.adapter_dir}", "step": 1}}')
    with pytest.raises(SwiftError, match="signal 6"):
        group.train_group(run, None)


# stands in for a rank whose reward hangs: once the stop file appears it gives up the call and exits 1
HANGING_REWARD_RANK = textwrap.dedent(
    """
    import pathlib, sys, time
    folder = pathlib.Path(sys.argv[1])
    while not (folder / "stop-requested").exists():
        time.sleep(0.05)
    line = "stopped while reward stuck was running on 8 completions; the step was not finished"
    (folder / "error-rank0.txt").write_text(line + "\\n\\ntraceback")
    sys.exit(1)
    """
)


def test_a_stop_while_a_ranks_reward_hangs_ends_the_run_stopped(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    run = Run(folder, RunConfig(run_id="r", arguments={"num_processes": 2}))  # planned for the CPU
    monkeypatch.setattr(
        group,
        "launch_command",
        lambda args, folder, port, resume: [sys.executable, "-c", HANGING_REWARD_RANK, str(folder)],
    )
    run.stop_request.set()  # run.stop() while the rank is inside the reward call
    group.train_group(run, None)  # no exception: the run ends stopped (Run._train: STOPPED)
    assert run.notes[-1].startswith("rank 0: stopped while reward stuck was running")


def test_a_rank_reads_the_stop_file_as_its_stop_request(tmp_path):
    from kernel_magics.train.runtime.distributed import STOP_FILE
    from kernel_magics.train.runtime.worker import StopFileRequest

    request = StopFileRequest(tmp_path / STOP_FILE)
    assert not request.is_set()
    (tmp_path / STOP_FILE).touch()
    assert request.is_set()
