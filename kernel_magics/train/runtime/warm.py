"""A warm worker process: started in the background on first need (``%load_ext kernel_magics`` or the first
training call), it has imported torch, transformers, peft and TRL by the time a run takes it (see
:mod:`.runner`); each run takes the waiting one and a fresh one is started when that run ends.

The worker is not the kernel's child: it detaches at once (a double fork), so a kernel that restarts, which
terminates its children, or dies leaves it alone. A worker that waits holds no CUDA context and no model; it
reads one job from its standard input (a pipe from the kernel), and when the kernel goes away first, that
input ends and the worker exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...errors import SwiftError
from .folders import pid_alive
from .records import READY_VARIABLE

KEEP_WARM = {"after_runs": True}  # a one-shot process (the CLI) turns it off: no worker for a run that never comes
START_S = 60.0  # how long a new worker may take to say its pid


@dataclass
class Worker:
    """A detached worker process: its pid, the pipe its job goes down, and the log it writes while it waits."""

    pid: int
    stdin: IO[bytes]
    log: Path

    def alive(self) -> bool:
        return pid_alive(self.pid)

    @property
    def ready(self) -> bool:
        """Has it imported the training stack (it then waits for its job)?"""
        return self.log.with_suffix(".ready").exists()


_spare: Worker | None = None
_lock = threading.Lock()


def _spawn() -> Worker:
    from ...config import settings
    from .distributed import child_environment

    logs = settings.cache_path / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"worker-{os.getpid()}-{time.time_ns()}.log"
    env = child_environment()
    env[READY_VARIABLE] = str(log_path.with_suffix(".ready"))
    with open(log_path, "ab") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "kernel_magics.train.runtime.runner", "--detach"],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # the kernel's interrupts do not reach it
        )
    launcher.wait(START_S)  # it forks the worker and exits: the worker's parent is no longer this process
    pid_file = log_path.with_suffix(".pid")
    deadline = time.monotonic() + START_S
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        raise SwiftError(f"the training worker did not start; see {log_path}") from None
    assert launcher.stdin is not None
    return Worker(pid, launcher.stdin, log_path)


def prestart() -> None:
    """Have a warm worker waiting (started now unless one waits already)."""
    global _spare
    with _lock:
        if _spare is None or not _spare.alive():
            _spare = _spawn()


def replenish() -> None:
    """After a run ended: the next run's worker, unless this process will start no more runs."""
    if KEEP_WARM["after_runs"]:
        prestart()


def wait_for_spare(timeout: float = 120.0) -> bool:
    """Block until the waiting worker has imported the training stack (True), or ``timeout`` passes."""
    prestart()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            spare = _spare
        if spare is None or not spare.alive():
            return False
        if spare.ready:
            return True
        time.sleep(0.1)
    return False


def take() -> Worker:
    """The waiting worker (a new one when none waits). The next one is started when the run ends
    (:func:`replenish`), not now: importing beside a training run would slow its steps on a CPU."""
    global _spare
    with _lock:
        taken = _spare if _spare is not None and _spare.alive() else _spawn()
        _spare = None
    return taken


def job_environment(trust_remote_code: bool) -> dict[str, str]:
    """The environment a run trains with: this kernel's, with its current settings (``%config`` included)."""
    from dataclasses import fields

    from ...config import ENV_PREFIX, settings
    from .distributed import child_environment

    env = child_environment()
    for f in fields(settings):
        env[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    env[ENV_PREFIX + "TRUST_REMOTE_CODE"] = "1" if trust_remote_code else "0"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def hand_over(worker: Worker, folder: Path, resume: Path | None, env: dict[str, Any]) -> None:
    """Give the run in ``folder`` to ``worker``; from now on the worker writes into the run folder."""
    job = {
        "folder": str(folder.resolve()),
        "resume": str(resume) if resume else None,
        "env": env,
        "log": str(worker.log),
    }
    with contextlib.suppress(BrokenPipeError, OSError):
        worker.stdin.write((json.dumps(job) + "\n").encode())
        worker.stdin.close()
