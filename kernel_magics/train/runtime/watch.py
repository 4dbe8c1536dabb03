"""The kernel's side of a run trained by its own process (:mod:`.runner`): mirror what that process writes into
the run folder into the :class:`~.run.Run` (rows, events, status), pass Stop on as the ``stop-requested``
file, notice a process that died or froze, and turn its end into the run's final state.

Any number of kernels may watch one run; none is needed: the process records its outcome itself. A watcher
only writes the outcome when the process could not (it was killed), so a later ``Run.load`` agrees.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...jobs import FAILED, QUEUED, RUNNING, STOPPING, TERMINAL
from .distributed import EVENTS_FILE, STOP_FILE
from .folders import LOCK_NAME, pid_alive
from .group import Tail, mirror
from .records import HEARTBEAT_FILE, RUNNER_FILE, atomic_write, read_exit, read_record, read_status, write_status

POLL_S = 0.25
GIB = 1024**3


def runner_pid(folder: Path, key: str = "pid") -> int | None:
    """The pid of the process training the run in ``folder`` (``key`` "reaper": of its parent, which records
    how it ended), from ``runner.json``; None when unknown."""
    try:
        return int(json.loads((folder / RUNNER_FILE).read_text(encoding="utf-8"))[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def peak_rss(pid: int) -> int | None:
    """The process's peak resident memory in bytes (Linux ``VmHWM``), None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_limit() -> int | None:
    """The memory this machine (or its cgroup, when smaller) gives processes, in bytes."""
    limits = []
    with contextlib.suppress(OSError, ValueError):
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append(int(text))
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                limits.append(int(line.split()[1]) * 1024)
    return min(limits) if limits else None


def death_line(pid: int, returncode: int | None, peak: int | None) -> str:
    """One line for a training process that ended without recording its outcome."""
    memory = ""
    if peak:
        limit = memory_limit()
        memory = f"peak RSS {peak / GIB:.1f} GiB" + (f" of {limit / GIB:.1f} GiB" if limit else "")
    if returncode is not None and returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        oom = f" — probably out of memory ({memory})" if name == "SIGKILL" else (f" ({memory})" if memory else "")
        head = f"the training process (pid {pid}) was ended by signal {number} ({name}){oom}"
    elif returncode is not None:
        head = f"the training process (pid {pid}) exited with code {returncode} without recording an outcome"
    else:
        head = f"the training process (pid {pid}) ended without recording an outcome (killed?{' ' + memory if memory else ''})"
    return head + "; resume() continues from the last checkpoint"


class Watcher:
    """Follows one run's process until it ends. ``reaper``: the pid of the process that waits for the training
    process and records its end (the worker this kernel handed the run to); None for a run found on disk."""

    def __init__(self, run: Any, reaper: int | None = None, on_end: Callable[[], None] | None = None) -> None:
        self.run = run
        self.on_end = on_end  # called before the final state is set (this kernel lets go of the folder)
        self.folder: Path = run.output_dir
        self.reaper = reaper if reaper is not None else runner_pid(self.folder, "reaper")
        self.pid = runner_pid(self.folder)
        self.peak: int | None = None
        self.rows = Tail(run.logging_file, offset=getattr(run, "log_offset", None))
        self.events = Tail(self.folder / EVENTS_FILE, from_start=True)
        self.stop_sent = False
        self.step_seen = (run.progress.get("step", 0), time.monotonic())
        self.stall_told = False
        self.started = time.monotonic()

    def alive(self) -> bool:
        if self.reaper is not None and pid_alive(self.reaper):
            return True
        return self.pid is not None and pid_alive(self.pid)

    def follow(self) -> None:
        """Mirror the run until its process ends; then set the run's final state."""
        while self.alive():
            self.tick()
            if self.frozen():
                break
            time.sleep(POLL_S)
        self.tick()
        self.finish()

    def tick(self) -> None:
        run = self.run
        mirror(run, self.rows, self.events)
        if self.pid is None:
            self.pid = runner_pid(self.folder)
            self.run.worker_pid = self.pid
        if self.pid is not None:
            self.peak = peak_rss(self.pid) or self.peak
        if run.stop_request.is_set() and not self.stop_sent:
            (self.folder / STOP_FILE).touch()
            self.stop_sent = True
        state = read_status(self.folder).get("state")
        if state == RUNNING and run.status == QUEUED:
            run.set_state(STOPPING if run.stop_request.is_set() else RUNNING)

    def frozen(self) -> bool:
        """True (after reporting it) when the process sent no heartbeat for ``settings.stall_seconds``; a long
        time without a new step is only reported."""
        from ...config import settings

        limit = float(settings.stall_seconds)
        now = time.monotonic()
        beat = read_record(self.folder / HEARTBEAT_FILE).get("time")
        beat_age = time.time() - float(beat) if isinstance(beat, (int, float)) else now - self.started
        step = self.run.progress.get("step", 0)
        if step != self.step_seen[0]:
            self.step_seen, self.stall_told = (step, now), False
        if beat_age > limit and self.pid is not None:
            line = (
                f"no heartbeat from the training process (pid {self.pid}) for {beat_age:.0f} s (stopped or frozen); "
                "it was ended; resume() continues from the last checkpoint"
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
            self.record_failure(line)
            return True
        if now - self.step_seen[1] > limit and not self.stall_told and self.run.status == RUNNING:
            self.run.log(
                f"no new step for {now - self.step_seen[1]:.0f} s; the process is alive (a long step or a hang?)"
            )
            self.stall_told = True
        return False

    def finish(self) -> None:
        run = self.run
        status = read_status(self.folder)
        if status.get("state") in TERMINAL:
            self.end(status["state"], status.get("error"))
            return
        if run.done:
            return
        ended = read_exit(self.folder)
        returncode = -int(ended["signal"]) if "signal" in ended else ended.get("code")
        self.record_failure(death_line(self.pid or self.reaper or 0, returncode, self.peak))

    def record_failure(self, line: str) -> None:
        """What the process could not write itself: ``error.txt`` and ``status.json``; the lock freed."""
        with contextlib.suppress(OSError):
            atomic_write(self.folder / "error.txt", line + "\n")
            write_status(self.folder, FAILED, line)
            lock = self.folder / LOCK_NAME
            if lock.is_file() and str(self.pid) in lock.read_text():
                lock.unlink()
        self.end(FAILED, line)

    def end(self, state: str, error: str | None) -> None:
        if self.on_end is not None:
            with contextlib.suppress(Exception):
                self.on_end()
        self.run.set_state(state, error=error)
