"""``python -m kernel_magics.train.runtime.worker RUN_FOLDER [--resume CHECKPOINT]``: one rank of a run's process group.

``torchrun`` starts one per process (see :mod:`.distributed`). Every rank builds the run's trainer from its
``config.json`` exactly as a one-process run does; rank 0 alone writes ``logging.jsonl`` and
``events.jsonl``. A failing rank writes ``error-rank<R>.txt`` (its one line first) and exits 1, after which
torchrun ends the other ranks.

A rank that trained to the end waits at a barrier until rank 0 has published the adapter (rank 0 then writes
``group-finished.json``), destroys the process group and joins the threads it started before it exits, so
no rank's teardown can end the others while the adapter is being written.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import traceback
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .distributed import EVENTS_FILE, FINISHED_FILE, STOP_FILE

THREAD_JOIN_S = 10.0  # how long an exiting rank waits for each thread it started


class GroupStopCallback(TrainerCallback):
    """Stop every rank at the same step boundary, with a checkpoint, once any rank sees the stop file."""

    def __init__(self, stop_file: Path) -> None:
        self.stop_file = stop_file

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1.0 if self.stop_file.exists() else 0.0])
        if dist.is_available() and dist.is_initialized():
            if dist.get_backend() == "nccl":
                flag = flag.to(args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            control.should_training_stop = True
            control.should_save = True


class StopFileRequest:
    """A rank's stop request: the stop file that the kernel writes (read where a run's ``threading.Event`` is,
    so a reward call that hangs ends as soon as a stop is asked, as it does in a one-process run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        self.path.touch()

    def clear(self) -> None:
        return None


def _record_events(folder: Path):  # noqa: ANN202 - a Job subscriber
    path = folder / EVENTS_FILE

    def record(event: str, payload: Any) -> None:
        if event == "metrics":  # rank 0's rows go to logging.jsonl already
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, "payload": payload}, default=str) + "\n")

    return record


def train(folder: Path, resume: str | None, rank: int) -> None:
    from ...argspec import load
    from ..methods.registry import trainer_of
    from .callbacks import LoggingWindowCallback, RunCallback
    from .folders import save_adapter
    from .run import Run

    run = Run.load(folder)
    copy = run.config.dataset_copy
    if copy and not Path(copy).is_absolute():  # a cluster script's run folder keeps its data beside config.json
        run.config.dataset_copy = str(folder.resolve() / copy)
    if rank == 0:
        run.subscribe(_record_events(folder))
    run.stop_request = StopFileRequest(folder / STOP_FILE)
    trainer = load(trainer_of(run.config))(run, None)
    trainer.add_callback(GroupStopCallback(folder / STOP_FILE))
    trainer.add_callback(LoggingWindowCallback(trainer, Path(resume) if resume else None))
    if rank == 0:
        trainer.add_callback(RunCallback(run.add_row, run.on_event, threading.Event()))  # the file stops ranks
    trainer.train(resume_from_checkpoint=resume)
    if rank == 0:
        run.emit("saving", str(run.adapter_dir))
    save_adapter(trainer, run.adapter_dir, main_process=rank == 0)  # every rank: FSDP / ZeRO-3 gather
    if rank == 0:
        from .records import atomic_write

        atomic_write(
            folder / FINISHED_FILE, json.dumps({"adapter": str(run.adapter_dir), "step": trainer.state.global_step})
        )
    trainer = None
    _leave_group()


def _leave_group() -> None:
    """Wait for every rank (rank 0 has written the adapter), destroy the process group, join our threads."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(THREAD_JOIN_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--resume", default=None)
    options = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        train(options.folder, options.resume, rank)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes this rank's one line
        from .failures import describe_failure
        from .records import atomic_write
        from .run import Run

        try:
            line = describe_failure(exc, Run.load(options.folder))
        except Exception:  # noqa: BLE001
            line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        atomic_write(options.folder / f"error-rank{rank}.txt", line + "\n\n" + traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
