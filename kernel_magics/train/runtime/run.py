"""``Run``: one training run, its folder on disk and its live metrics.

A run trains in a process of its own (:mod:`.runner`, warm from :mod:`.warm`) that outlives the kernel; the
kernel's ``Run`` watches it (:mod:`.watch`) and any kernel may attach to it later (``km.attach``). With
``where="kernel"`` it trains in a thread of this process instead (a debugger's case; it ends with the process).

A run folder (``settings.workspace_path / "runs" / <run-id>`` unless ``output_dir=`` is given) holds:

* ``config.json``: everything needed to reproduce the run (written atomically)
* ``logging.jsonl``: one metric row per logged step (and eval rows)
* ``checkpoint-*/``: ``Trainer`` checkpoints (``resume()`` continues from the last complete one)
* ``adapter/``: the peft adapter (``PeftModel.from_pretrained`` loads it); the whole model for ``full``
* ``error.txt`` with the traceback when a run fails; ``.run.lock`` while a run is active

The trainer is built by the ``trainer`` hook of the run's method in the registry (:mod:`.methods`), never
by a name read from the folder's ``config.json``, so every training method reuses this class as it is.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from traceback import format_exc
from typing import Any

from ... import jobs
from ...device import free_memory
from ...errors import SwiftUsageError
from ...jobs import FAILED, FINISHED, QUEUED, RUNNING, STOPPED, STOPPING, TERMINAL, Job, live_jobs
from ..methods.registry import trainer_of
from .distributed import EVENTS_FILE, FINISHED_FILE, STOP_FILE
from .failures import describe_failure
from .folders import (
    active_lock,
    checkpoint_step,
    checkpoints_in,
    claim,
    mark_checkpoint,
    release,
    save_adapter,
)
from .interrupts import chain_sigint
from .records import EXIT_FILE, HEARTBEAT_FILE, RUNNER_FILE, STATUS_FILE, atomic_write, read_exit, read_status
from .run_config import RunConfig

_training_slot = threading.Lock()
# where="kernel": one run trains at a time in a process (accelerate's state is process-wide). A second
# such run waits, "queued", until the first ends. Runs in their own processes share a device by its lease.
SAMPLE_EVENTS = ("samples", "grpo_samples")  # what vlm_samples / grpo_samples publish
START_FILES = (STOP_FILE, EVENTS_FILE, FINISHED_FILE, STATUS_FILE, RUNNER_FILE, HEARTBEAT_FILE, EXIT_FILE, "error.txt")


class Run(Job):
    """A training run: ``.status``, ``.wait()``, ``.stop()``, ``.metrics``, ``.resume()``, ``.config``."""

    kind = "run"

    def __init__(self, output_dir: Path, config: RunConfig) -> None:
        super().__init__(config.run_id or output_dir.name)
        self.output_dir = Path(output_dir)
        self.config = config
        self.rows: list[dict[str, Any]] = []
        self.progress: dict[str, Any] = {"step": 0, "max_steps": config.max_steps or 0}
        self.summary: dict[str, Any] = {}
        self.notes: list[str] = []
        self.samples: dict[str, Any] | None = None  # the latest answers a method's sampling callback published
        self.stop_request = threading.Event()  # set by stop(); a run's process swaps in its stop file
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self.log_offset: int | None = None  # bytes of logging.jsonl already in ``rows`` (a loaded run)
        self.worker_pid: int | None = None

    # -- paths -----------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.name

    @property
    def adapter_dir(self) -> Path:
        """``adapter/``: the peft adapter (or the full model for method ``full``)."""
        return self.output_dir / "adapter"

    @property
    def run_uid(self) -> str | None:
        """This run's identity, recorded in each of its checkpoints (None: a run from before it existed)."""
        return self.config.run_uid

    @property
    def checkpoints(self) -> list[Path]:
        """This run's complete checkpoints, oldest first (another run's, or a half-written one, are left out)."""
        return checkpoints_in(self.output_dir, self.run_uid)

    @property
    def logging_file(self) -> Path:
        return self.output_dir / "logging.jsonl"

    # -- metrics ---------------------------------------------------------------------------------
    @property
    def metrics(self):  # noqa: ANN201 - pandas.DataFrame
        """One row per logged step (train and eval metrics of the same step merged)."""
        import pandas as pd

        with self._log_lock:
            rows = list(self.rows)
        if not rows:
            return pd.DataFrame(columns=["step", "loss", "learning_rate", "grad_norm", "tokens_per_s", "memory_gb"])
        frame = pd.DataFrame(rows)
        return frame.groupby("step", as_index=False, sort=True).last()

    def add_row(self, row: dict[str, Any], written: bool = False) -> None:
        """A logged step's metrics: kept, appended to ``logging.jsonl`` unless the run's process ``written`` it."""
        with self._log_lock:
            self.rows.append(row)
            if not written:
                with open(self.logging_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
        self.emit("metrics", row)

    def on_event(self, event: str, payload: Any) -> None:
        """An event of the trainer (progress, checkpoint, summary, samples), kept and passed to subscribers."""
        if event == "checkpoint" and self.run_uid:
            mark_checkpoint(Path(payload), self.run_id, self.run_uid)
        if event == "progress" or event == "begin":
            self.progress.update(payload if event == "progress" else {"max_steps": payload["max_steps"]})
        elif event == "summary":
            self.summary = payload
        elif event in SAMPLE_EVENTS:  # from the run's own process: the latest samples, as its sink keeps them
            self.samples = payload
        self.emit(event, payload)

    def log(self, line: str) -> None:
        """A note for the user (plan, data report): kept, and shown by dashboards."""
        self.notes.append(line)
        self.emit("log", line)

    @property
    def in_kernel(self) -> bool:
        """Does this run train in a thread of this process (``where="kernel"``) rather than its own process?"""
        return self.config.arguments.get("where") == "kernel"

    @property
    def ends_with_process(self) -> bool:  # type: ignore[override]
        return self.in_kernel

    # -- control ---------------------------------------------------------------------------------
    def start(self, prepared: Any = None, resume_from: Path | None = None) -> Run:
        """Start training: in its own process, watched from a thread of this one, or with ``where="kernel"`` in
        that thread itself (``prepared``: inputs the builder already checked, used in this process only)."""
        claim(self.output_dir, owner=self.run_uid)  # write_run took it for this run already
        self.stop_request.clear()
        for name in START_FILES:  # the outcome of an earlier start (a resume starts anew)
            (self.output_dir / name).unlink(missing_ok=True)
        for stale in self.output_dir.glob("error-rank*.txt"):
            stale.unlink(missing_ok=True)
        target, args = (
            (self._train, (prepared, resume_from)) if self.in_kernel else (self._start_worker, (resume_from,))
        )
        self._thread = threading.Thread(target=target, args=args, name=f"km-{self.name}", daemon=True)
        self._thread.start()
        chain_sigint()
        return self

    def follow(self) -> Run:
        """Watch this run's process from this kernel (a run started elsewhere, or before a restart)."""
        from .watch import Watcher

        if self._thread is not None and self._thread.is_alive():
            return self
        jobs.register_live(self)
        watcher = Watcher(self)
        self.worker_pid = watcher.pid
        self._thread = threading.Thread(target=watcher.follow, name=f"km-watch-{self.name}", daemon=True)
        self._thread.start()
        chain_sigint()
        return self

    def stop(self) -> None:
        """Ask the run to stop at the next step boundary, after writing a checkpoint (a queued run just ends)."""
        if self.done:
            return
        self.stop_request.set()
        if self._thread is None:
            if active_lock(self.output_dir):  # trained by a process no thread of this kernel watches
                (self.output_dir / STOP_FILE).touch()
            else:  # never started: nothing will pick the request up
                self.set_state(STOPPED)
        elif self.status == RUNNING:
            self.set_state(STOPPING)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends; an interrupt (Ctrl-C, kernel ■) stops it with a checkpoint."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            state = super().wait(timeout)
        except KeyboardInterrupt:
            self.stop()
            print(f"stopping {self.name} at the next step (a checkpoint is written)...", flush=True)
            state = super().wait(timeout)
        thread = self._thread
        if state in TERMINAL and thread is not None and thread is not threading.current_thread():
            # the thread still frees memory after the final state: a script that exits right after
            # wait() must not end the interpreter under it (torch aborts the process then)
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return state

    def resume(self, num_processes: int | None = None) -> Run:
        """Continue from the last complete checkpoint: same folder, ``global_step`` and LR schedule.

        ``num_processes``: resume on another number of processes than the run had (e.g. a checkpoint that
        2 processes wrote, continued by 1)."""
        if not self.done:
            raise SwiftUsageError(f"run {self.name} is {self.status}; resume() works once it has stopped or failed")
        if num_processes is not None:
            from .group import set_processes

            set_processes(self, num_processes)
        notes: list[str] = []
        own = checkpoints_in(self.output_dir, self.run_uid, notes)
        for note in notes:
            self.log(note)
        if not own:
            raise SwiftUsageError(f"run {self.name} has no checkpoint in {self.output_dir}; start a new run instead")
        last = own[-1]
        self._truncate_log(checkpoint_step(last))
        with self._lock:
            self._state, self.error = QUEUED, None
            self._done.clear()
        jobs.register_live(self)
        self.log(f"resuming {self.name} from {last.name}")
        return self.start(resume_from=last)

    def _truncate_log(self, step: int) -> None:
        with self._log_lock:
            self.rows = [r for r in self.rows if r.get("step", 0) <= step]
            atomic_write(self.logging_file, "".join(json.dumps(r) + "\n" for r in self.rows))
            self.log_offset = None  # a watcher starts from the file's end as it is now

    def to_script(self, path: str | os.PathLike[str] | None = None, kind: str = "shell") -> Path:
        """Write a standalone script (``kind`` "shell" or "python") that reproduces this run outside Jupyter."""
        from ..script import to_script

        return to_script(self, path, kind)

    # -- the watching thread (its own process) or the training thread (where="kernel") -------------
    def _start_worker(self, resume_from: Path | None) -> None:
        """Hand the run to a warm worker process and watch it until it ends."""
        from . import warm
        from .watch import Watcher

        try:
            worker = warm.take()
            self.worker_pid = None
            warm.hand_over(worker, self.output_dir, resume_from, warm.job_environment(self.config.trust_remote_code))
            Watcher(self, worker.pid, on_end=self._release).follow()
            warm.replenish()  # the next run's worker, now that this one no longer needs the CPU
        except BaseException as exc:  # noqa: BLE001 - the thread must always end in a terminal state
            self._release()
            self.set_state(FAILED, error=describe_failure(exc, self))

    def _train(self, prepared: Any, resume_from: Path | None) -> None:
        from ...argspec import load
        from .callbacks import LoggingWindowCallback, RunCallback
        from .distributed import is_group

        if not self._wait_for_slot():
            self._release()
            self.set_state(STOPPED)
            return
        try:
            self.set_state(RUNNING)
            if self.stop_request.is_set():
                self.set_state(STOPPING)
            if is_group(self.config.arguments):
                from .group import train_group

                train_group(self, resume_from)  # torchrun trains; this thread mirrors rank 0's logs
            else:
                builder: Callable[..., Any] = load(trainer_of(self.config))
                trainer = builder(self, prepared)
                trainer.add_callback(RunCallback(self.add_row, self.on_event, self.stop_request))
                trainer.add_callback(LoggingWindowCallback(trainer, resume_from))
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
                self.emit("saving", str(self.adapter_dir))
                save_adapter(trainer, self.adapter_dir)
            final = STOPPED if self.stop_request.is_set() else FINISHED
            self._release()
            self.set_state(final)
        except BaseException as exc:  # noqa: BLE001 - the thread must always end in a terminal state
            line = describe_failure(exc, self)
            stopped = getattr(exc, "ends_as_stopped", False) and self.stop_request.is_set()  # stopped mid-step
            with contextlib.suppress(OSError):
                self.log(line) if stopped else atomic_write(self.output_dir / "error.txt", f"{line}\n\n{format_exc()}")
            self._release()
            self.set_state(STOPPED if stopped else FAILED, error=None if stopped else line)
        finally:
            trainer = None
            free_memory()
            _training_slot.release()

    def _wait_for_slot(self) -> bool:
        """Take the process's training slot; False when stopped while waiting for it."""
        if _training_slot.acquire(blocking=False):
            return True
        busy = [j.name for j in live_jobs("run") if j is not self and j.status in (RUNNING, STOPPING)]
        self.log(f"queued: waiting for {', '.join(busy) or 'the run in progress'} to end (one run trains at a time)")
        while not _training_slot.acquire(timeout=0.2):
            if self.stop_request.is_set():
                return False
        return True

    def _release(self) -> None:
        release(self.output_dir)

    # -- display ---------------------------------------------------------------------------------
    def __repr__(self) -> str:
        step = self.progress.get("step", 0)
        extra = f": {self.error}" if self.error else ""
        return f"<Run {self.name!r} {self.status} step {step}/{self.progress.get('max_steps') or '?'}{extra}>"

    def _repr_html_(self) -> str:
        frame = self.metrics
        last = frame.iloc[-1].to_dict() if len(frame) else {}
        color = {"failed": "#c00", "finished": "green", "stopped": "#b60"}.get(self.status, "#06c")
        cells = [
            (
                "status",
                f"<b style='color:{color}'>{self.status}</b>" + (f" — {html.escape(self.error)}" if self.error else ""),
            ),
            ("method", html.escape(f"{self.config.method} ({self.config.plan.method})")),
            ("model", html.escape(self.config.model)),
            ("step", f"{self.progress.get('step', 0)} / {self.progress.get('max_steps') or '?'}"),
            ("loss", f"{last['loss']:.4f}" if isinstance(last.get("loss"), float) else "—"),
            ("output_dir", html.escape(str(self.output_dir))),
            ("checkpoints", html.escape(", ".join(p.name for p in self.checkpoints) or "—")),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>" for k, v in cells
        )
        return f"<table class='km-run'><caption style='text-align:left'><b>Run {html.escape(self.name)}</b></caption>{body}</table>"

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Run:
        """A run from its folder (status from the files: finished, stopped, failed or unknown)."""
        path = Path(folder)
        config = RunConfig.read(path)  # data only: trust and the trainer come from this session and the code
        run = cls(path, config)
        if run.logging_file.is_file():
            data = run.logging_file.read_bytes()
            run.log_offset = data.rfind(b"\n") + 1  # a watcher goes on from the last complete row
            for line in data[: run.log_offset].splitlines():
                try:
                    run.rows.append(json.loads(line))
                except ValueError:
                    continue
        if run.rows:
            run.progress["step"] = max(r.get("step", 0) for r in run.rows)
        state, run.error = state_on_disk(path, config, run)
        jobs.unregister_live(run)
        run._state = state
        if state in TERMINAL:
            run._done.set()
        return run


def state_on_disk(path: Path, config: RunConfig, run: Run) -> tuple[str, str | None]:
    """A run's state and error line from its folder: its own process's record (``status.json``) first."""
    status = read_status(path)
    if (path / "error.txt").is_file():
        lines = (path / "error.txt").read_text().splitlines()
        return FAILED, lines[0] if lines else "failed"
    if active_lock(path):
        return (QUEUED if status.get("state") == QUEUED else RUNNING), None
    if status.get("state") in TERMINAL:
        return status["state"], status.get("error")
    if (path / RUNNER_FILE).is_file():  # its process ended before it could record how, and nobody watched
        from .watch import death_line, runner_pid

        ended = read_exit(path)
        return FAILED, death_line(
            runner_pid(path) or 0, -int(ended["signal"]) if "signal" in ended else ended.get("code"), None
        )
    if config.max_steps and run.progress["step"] < config.max_steps and run.checkpoints:
        return STOPPED, None
    return FINISHED, None
