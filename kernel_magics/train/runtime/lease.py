"""One device, one training run at a time: a lease that a run's process takes before it loads the model.

Two runs started at once on one GPU (two notebooks, or two runs in one notebook) would both load and run out
of memory. A lease is an exclusive ``flock`` on ``<cache>/leases/<device>.lock``, held by the process that
trains: the kernel that dies, or a worker that is killed, gives it back with its last file descriptor, so no
daemon and no clean-up are needed. A waiting run writes ``<cache>/leases/<device>.queue/<run-id>.json`` so
``km.runs()`` and its dashboard can say who waits for whom.

On the CPU the lease is off unless ``settings.device_lease`` is "on" (runs share the cores); on a GPU it is
on unless "off". This is a single-machine mechanism: across machines use torchrun or Slurm scripts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .folders import pid_alive
from .records import read_record

POLL_S = 0.5


def lease_name(device: str) -> str | None:
    """The lease a run on ``device`` ("cpu", "cuda", "cuda:1", "mps") takes; None when leases are off there."""
    from ...config import settings

    mode = settings.device_lease
    kind = device.split(":")[0]
    if mode == "off" or (mode == "auto" and kind == "cpu"):
        return None
    index = device.split(":")[1] if ":" in device else "0"
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{kind}-{index}" if kind != "cpu" else "cpu")


def leases_folder() -> Path:
    from ...config import settings

    return settings.cache_path / "leases"


def holder(name: str) -> dict[str, Any]:
    """Who holds lease ``name`` now (``run_id``, ``pid``, ``since``), as its holder wrote it; {} when free."""
    info = read_record(leases_folder() / f"{name}.holder.json")
    return info if info.get("pid") and pid_alive(int(info["pid"])) else {}


def waiting(name: str | None = None) -> list[dict[str, Any]]:
    """The runs waiting for a lease (all leases when ``name`` is None), first come first."""
    root = leases_folder()
    folders = [root / f"{name}.queue"] if name else sorted(root.glob("*.queue"))
    found = []
    for folder in folders:
        for entry in folder.glob("*.json"):
            info = read_record(entry)
            if info.get("pid") and pid_alive(int(info["pid"])):
                found.append(info)
    return sorted(found, key=lambda info: info.get("since", 0.0))


@contextlib.contextmanager
def device_lease(
    name: str | None, run_id: str, on_wait: Callable[[str], None], stop_requested: Callable[[], bool]
) -> Iterator[bool]:
    """Hold lease ``name`` for the block (None: no lease). While it is held by another run, ``on_wait`` gets
    one line (``waiting for cuda:0 (held by run X)``) and the call polls; yields False when a stop was asked
    while waiting (the block should then not train)."""
    if name is None:
        yield True
        return
    root = leases_folder()
    queue = root / f"{name}.queue"
    queue.mkdir(parents=True, exist_ok=True)
    ticket = queue / f"{run_id}.json"
    fd = os.open(root / f"{name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    since = time.time()
    ticket.write_text(json.dumps({"run_id": run_id, "pid": os.getpid(), "since": since, "lease": name}))
    told: str | None = None
    try:
        while True:
            first = not any(w["since"] < since and w["run_id"] != run_id for w in waiting(name))  # first come first
            if first:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
            held_by = holder(name).get("run_id", "another run")
            line = f"waiting for {name.replace('-', ':', 1) if name != 'cpu' else 'cpu'} (held by run {held_by})"
            if line != told:
                on_wait(line)
                told = line
            if stop_requested():
                yield False
                return
            time.sleep(POLL_S)
        ticket.unlink(missing_ok=True)
        (root / f"{name}.holder.json").write_text(
            json.dumps({"run_id": run_id, "pid": os.getpid(), "since": time.time()})
        )
        yield True
    finally:
        ticket.unlink(missing_ok=True)
        info = read_record(root / f"{name}.holder.json")
        if info.get("pid") == os.getpid():
            (root / f"{name}.holder.json").unlink(missing_ok=True)
        os.close(fd)  # gives the flock back (a killed process gives it back the same way)


@contextlib.contextmanager
def class_slot(
    run_id: str, on_wait: Callable[[str], None], stop_requested: Callable[[], bool], ask_stop: Callable[[], None]
) -> Iterator[Any]:
    """On a classroom hub (``KM_CLASSROOM_URL`` set by the teacher's spawner), hold a training slot that the
    classroom service grants (:mod:`kernel_magics.classroom.slot_client`) for the block: while queued,
    ``on_wait`` gets the service's line ("queued: 3rd in line, about 6 min"); a slot taken back (time limit,
    teacher) asks the run to stop with a checkpoint. Yields the slot (None off a classroom hub, or when a stop
    was asked while queued: check ``stop_requested``)."""
    if not os.environ.get("KM_CLASSROOM_URL"):
        yield None
        return
    from ...classroom.slot_client import request_slot

    slot = request_slot(run_id, heartbeat_s=float(os.environ.get("KM_CLASSROOM_HEARTBEAT_S") or 10.0))
    told = ""
    try:
        while not slot.wait(POLL_S * 4):
            if slot.ended.is_set() or stop_requested():
                yield None
                return
            if slot.message != told:
                on_wait(slot.message)
                told = slot.message
        watcher = threading.Thread(target=lambda: slot.revoked.wait() and ask_stop(), daemon=True)
        watcher.start()
        yield slot
    finally:
        slot.release()
