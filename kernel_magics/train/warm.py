"""A warm worker process: started in the background on first need (``%load_ext kernel_magics`` or the first
training call), it has imported torch, transformers, peft and TRL by the time a run takes it (see
:mod:`.runner`); each run takes the waiting one and a fresh one is started when that run ends.

A worker that waits holds no CUDA context and no model. It reads one job from its standard input; when the
kernel goes away first, that input ends and the worker exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

KEEP_WARM = {"after_runs": True}  # a one-shot process (the CLI) turns it off: no worker for a run that never comes
READY_VARIABLE = "KERNEL_MAGICS_WORKER_READY"  # the file a worker creates once it has imported everything
_spare: subprocess.Popen[bytes] | None = None
_spare_log: Path | None = None
_lock = threading.Lock()


def _spawn() -> tuple[subprocess.Popen[bytes], Path]:
    from ..config import settings
    from .distributed import child_environment

    logs = settings.cache_path / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"worker-{os.getpid()}-{time.time_ns()}.log"
    env = child_environment()
    env[READY_VARIABLE] = str(log_path.with_suffix(".ready"))
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kernel_magics.train.runner"],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # the kernel's interrupts, restart and death do not reach it
        )
    return process, log_path


def prestart() -> None:
    """Have a warm worker waiting (started now unless one waits already)."""
    global _spare, _spare_log
    with _lock:
        if _spare is None or _spare.poll() is not None:
            _spare, _spare_log = _spawn()


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
            spare, log_path = _spare, _spare_log
        if spare is None or spare.poll() is not None or log_path is None:
            return False
        if log_path.with_suffix(".ready").exists():
            return True
        time.sleep(0.1)
    return False


def take() -> tuple[subprocess.Popen[bytes], Path]:
    """The waiting worker (a new one when none waits). The next one is started when the run ends
    (:func:`prestart`), not now: importing beside a training run would slow its steps on a CPU."""
    global _spare, _spare_log
    with _lock:
        if _spare is not None and _spare.poll() is None and _spare_log is not None:
            taken = (_spare, _spare_log)
        else:
            taken = _spawn()
        _spare, _spare_log = None, None
    return taken


def job_environment(trust_remote_code: bool) -> dict[str, str]:
    """The environment a run trains with: this kernel's, with its current settings (``%config`` included)."""
    from dataclasses import fields

    from ..config import ENV_PREFIX, settings
    from .distributed import child_environment

    env = child_environment()
    for f in fields(settings):
        env[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    env[ENV_PREFIX + "TRUST_REMOTE_CODE"] = "1" if trust_remote_code else "0"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def hand_over(worker: tuple[subprocess.Popen[bytes], Path], folder: Path, resume: Path | None, env: dict[str, Any]) -> None:
    """Give the run in ``folder`` to ``worker``; from now on the worker writes into the run folder."""
    process, log_path = worker
    job = {"folder": str(folder.resolve()), "resume": str(resume) if resume else None, "env": env, "log": str(log_path)}
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        process.stdin.write((json.dumps(job) + "\n").encode())
        process.stdin.close()
