"""``python -m kernel_magics.train.runtime.runner``: the process that trains one run, outside the kernel.

The kernel keeps one such process warm (:mod:`.warm`): it imports torch, transformers, peft, TRL and the
trainers, then waits on its standard input for one job, ``{"folder": ..., "resume": ..., "env": {...}}``.
From then on it belongs to the run, not to the kernel:

* it takes the run folder's lock (``.run.lock`` names its pid), writes ``runner.json`` and, every
  :data:`HEARTBEAT_S` seconds, ``heartbeat.json`` (time, step);
* it takes the device's lease (:mod:`.lease`) before loading anything, saying who it waits for;
* it trains, in this process (one process) or by starting and watching ``torchrun`` (a process group), exactly
  as a rank of a group does (:func:`.worker.train`): metric rows to ``logging.jsonl``, events to
  ``events.jsonl``, a stop request is the folder's ``stop-requested`` file (SIGTERM writes it too);
* it records the outcome itself in ``status.json`` (and ``error.txt`` with the traceback when it failed), so a
  run whose kernel died trains to the end and is found finished, stopped or failed by whoever looks next;
* it exits, and every byte it held goes back to the system.

Its session is its own, so the kernel's interrupts, restarts and death do not reach it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ...jobs import FAILED, FINISHED, QUEUED, RUNNING, STOPPED
from .distributed import EVENTS_FILE, STOP_FILE
from .folders import LOCK_NAME
from .records import EXIT_FILE, HEARTBEAT_FILE, READY_VARIABLE, RUNNER_FILE, atomic_write, write_status

HEARTBEAT_S = 2.0
WARM_IMPORTS = (
    "torch", "transformers", "peft", "datasets", "accelerate", "trl",
    "kernel_magics.train.methods.sft", "kernel_magics.train.methods.dpo", "kernel_magics.train.methods.grpo", "kernel_magics.train.runtime.worker",
)  # fmt: skip


def preload() -> None:
    """Import what every run needs, so a run that takes this process starts at once (no CUDA context yet)."""
    for name in WARM_IMPORTS:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def record_event(folder: Path, event: str, payload: Any) -> None:
    """One event for whoever watches the run (the kernel tails ``events.jsonl``)."""
    with open(folder / EVENTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": event, "payload": payload}, default=str) + "\n")


class Heartbeat(threading.Thread):
    """Writes ``heartbeat.json`` (time, the step the run reached) every few seconds until the run ends."""

    def __init__(self, folder: Path) -> None:
        super().__init__(name="km-heartbeat", daemon=True)
        self.folder = folder
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.is_set():
            step = 0
            with contextlib.suppress(OSError, ValueError):
                tail = (self.folder / "logging.jsonl").read_bytes()[-4096:].splitlines()
                step = int(json.loads(tail[-1]).get("step", 0)) if tail else 0
            with contextlib.suppress(OSError):
                atomic_write(self.folder / HEARTBEAT_FILE, json.dumps({"time": time.time(), "step": step}))
            self.finished.wait(HEARTBEAT_S)


def take_over(folder: Path) -> None:
    """Make the run folder this process's: its lock names this pid; ``runner.json`` says who trains it (and
    which process records its end: the parent that reaps it)."""
    mine = {"pid": os.getpid(), "time": time.time()}
    atomic_write(folder / LOCK_NAME, json.dumps(mine))
    atomic_write(folder / RUNNER_FILE, json.dumps({**mine, "reaper": os.getppid()}))


def _stop_on_sigterm(folder: Path) -> None:
    """SIGTERM asks for a stop with a checkpoint (a second one ends the process)."""

    def ask(signum: int, frame: Any) -> None:
        (folder / STOP_FILE).touch()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, ask)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel's interrupts are not for this process


def train_here(folder: Path, resume: str | None) -> tuple[str, str | None]:
    """Train the run in ``folder`` (this process or its torchrun group); the final state and error line."""
    from .distributed import is_group
    from .lease import class_slot, device_lease, lease_name
    from .run_config import RunConfig

    config = RunConfig.read(folder)
    run_id = config.run_id or folder.name
    device = config.plan.device or "cpu"
    stop_file = folder / STOP_FILE

    def on_wait(line: str) -> None:
        record_event(folder, "log", line)

    with (
        class_slot(run_id, on_wait, stop_file.exists, stop_file.touch) as slot,
        device_lease(lease_name(device), run_id, on_wait, stop_file.exists) as granted,
    ):
        if not granted or (slot is None and stop_file.exists()):
            return STOPPED, None
        write_status(folder, RUNNING)
        try:
            if is_group(config.arguments):
                _train_group(folder, resume)
            else:
                from .worker import train

                train(folder, resume, rank=0)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the run's one line
            return _failure(folder, exc)
    return (STOPPED if stop_file.exists() else FINISHED), None


def _train_group(folder: Path, resume: str | None) -> None:
    from .group import train_group
    from .run import Run
    from .worker import StopFileRequest

    run = Run.load(folder)
    run.stop_request = StopFileRequest(folder / STOP_FILE)
    run.subscribe(lambda event, payload: record_event(folder, event, payload) if event == "log" else None)
    train_group(run, Path(resume) if resume else None, mirror_logs=False)


def _failure(folder: Path, exc: BaseException) -> tuple[str, str | None]:
    from .failures import describe_failure
    from .run import Run

    try:
        line = describe_failure(exc, Run.load(folder))
    except Exception:  # noqa: BLE001
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if getattr(exc, "ends_as_stopped", False) and (folder / STOP_FILE).exists():  # stopped mid-step
        record_event(folder, "log", line)
        return STOPPED, None
    atomic_write(folder / "error.txt", f"{line}\n\n{traceback.format_exc()}")
    return FAILED, line


def run_job(folder: Path, resume: str | None) -> int:
    """Everything the process does for one run, its outcome recorded in the folder whatever happens."""
    folder = folder.resolve()
    log = os.open(folder / "launcher.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    take_over(folder)
    _stop_on_sigterm(folder)
    write_status(folder, QUEUED)
    heartbeat = Heartbeat(folder)
    heartbeat.start()
    state, error = FAILED, "the training process ended unexpectedly"
    try:
        state, error = train_here(folder, resume)
    finally:
        write_status(folder, state, error)
        heartbeat.finished.set()
        (folder / LOCK_NAME).unlink(missing_ok=True)
    return 0 if state != FAILED else 1


def detach() -> None:
    """Leave the process that started this one (it exits; init adopts this one): a kernel that restarts
    terminates its children, and a run must not be one. The pid is written beside the ready file."""
    if os.fork():
        os._exit(0)
    ready = os.environ.get(READY_VARIABLE)
    if ready:
        atomic_write(Path(ready).with_suffix(".pid"), str(os.getpid()))


def reap(pid: int, folder: Path) -> int:
    """Wait for the training process ``pid`` (a child of this one) and record how it ended in ``exit.json``:
    the one fact only a parent learns (the signal that killed it, such as the out-of-memory killer's)."""
    _, status = os.waitpid(pid, 0)
    record = {"pid": pid, "time": time.time()}
    if os.WIFSIGNALED(status):
        record["signal"] = os.WTERMSIG(status)
    else:
        record["code"] = os.WEXITSTATUS(status)
    atomic_write(folder / EXIT_FILE, json.dumps(record))
    return 0


def wait_for_job() -> int:
    """The warm worker's life: import, wait for one job, then train it in a child process and become that
    child's reaper (this process's image is replaced by a small one, so only the child holds the stack)."""
    detach()
    preload()
    gc.freeze()  # what the imports made is permanent: a run's gc.collect() (accelerate calls one) skips it
    ready = os.environ.get(READY_VARIABLE)
    if ready:
        with contextlib.suppress(OSError):
            Path(ready).touch()
    line = sys.stdin.readline()
    if not line.strip():  # the kernel went away before it needed this process
        return 0
    job = json.loads(line)
    sys.stdin.close()
    for name in (job.get("log"), ready, ready and str(Path(ready).with_suffix(".pid"))):
        with contextlib.suppress(OSError, TypeError):
            Path(name).unlink()  # what it printed while it waited
    os.environ.clear()
    os.environ.update(job.get("env") or {})
    from ...config import settings

    settings.__post_init__()  # the kernel's settings, passed in the environment
    folder = Path(job["folder"]).resolve()
    (folder / EXIT_FILE).unlink(missing_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        return run_job(folder, job.get("resume"))
    os.execv(
        sys.executable, [sys.executable, "-m", "kernel_magics.train.runtime.runner", "--reap", str(child), str(folder)]
    )
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="train this run now (no waiting for a job)")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--detach", action="store_true", help="a warm worker: detach, import, wait for a job")
    parser.add_argument("--reap", nargs=2, metavar=("PID", "FOLDER"), help="record how training process PID ends")
    options = parser.parse_args(argv)
    if options.reap:
        return reap(int(options.reap[0]), Path(options.reap[1]))
    if options.folder is not None:
        return run_job(options.folder, options.resume)
    return wait_for_job()


if __name__ == "__main__":
    raise SystemExit(main())
