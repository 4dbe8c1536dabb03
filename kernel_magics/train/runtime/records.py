"""The small files a run's processes write for one another, always whole: a writer never leaves half a file
(:func:`atomic_write`), a reader takes an absent or unreadable record as empty (:func:`read_record`).

A run's own process (:mod:`.runner`) writes ``runner.json`` (its pid and reaper), ``heartbeat.json`` (time,
step), ``status.json`` (the outcome) and its reaper ``exit.json`` (the signal that ended it); the kernel's
watcher (:mod:`.watch`), :class:`~.run.Run` and the lease read them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

READY_VARIABLE = "KERNEL_MAGICS_WORKER_READY"  # set by :mod:`.warm`: the file to create once imports are done
RUNNER_FILE = "runner.json"
EXIT_FILE = "exit.json"
STATUS_FILE = "status.json"
HEARTBEAT_FILE = "heartbeat.json"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_record(path: Path) -> dict[str, Any]:
    """A small JSON object another process writes atomically (status, lease holder); {} when absent or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_status(folder: Path) -> dict[str, Any]:
    """``status.json`` of a run folder ({} when absent or unreadable)."""
    return read_record(folder / STATUS_FILE)


def write_status(folder: Path, state: str, error: str | None = None) -> None:
    atomic_write(
        folder / STATUS_FILE, json.dumps({"state": state, "error": error, "pid": os.getpid(), "time": time.time()})
    )


def read_exit(folder: Path) -> dict[str, Any]:
    """``exit.json`` of a run folder ({} when its process has not ended or nobody could record it)."""
    return read_record(folder / EXIT_FILE)
