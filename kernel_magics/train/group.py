"""The kernel's side of a run trained by a process group: start it, mirror rank 0's logs into the
:class:`~.run.Run` (so the dashboard, ``.metrics``, ``.status`` and ``.wait()`` are those of a one-process
run), pass a stop request on, and turn the group's end into the run's final state."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import SwiftError
from .distributed import (
    EVENTS_FILE,
    STOP_FILE,
    STOP_GRACE_S,
    DistributedArguments,
    GroupProcess,
    first_error,
    free_port,
    group_environment,
    launch_command,
)


class Tail:
    """New complete JSON lines of a file that another process appends to."""

    def __init__(self, path: Path, from_start: bool = False) -> None:
        self.path = path
        self.offset = 0 if from_start or not path.exists() else path.stat().st_size
        self.partial = b""

    def records(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def distributed_arguments(config: dict[str, Any]) -> DistributedArguments:
    stored = config.get("arguments") or {}
    return DistributedArguments(**{f.name: stored[f.name] for f in fields(DistributedArguments) if f.name in stored})


def other_node_command(run: Any, args: DistributedArguments, port: int, node_rank: int) -> str:
    """The CLI line that joins node ``node_rank`` to this run's group (same flags, its own rank)."""
    import shlex

    from .methods import command_of, method_of
    from .script import _flags

    config = run.config
    name = method_of(config).name
    arguments = dict(config.get("arguments") or {}, node_rank=node_rank, master_port=port, master_addr=args.master_addr)
    dataset = config.get("dataset_copy") or arguments.get("dataset")
    tokens = ["python", "-m", "kernel_magics", name, "--model", str(config.get("model")), "--dataset", str(dataset)]
    tokens += _flags(command_of(name), arguments)
    return " ".join(shlex.quote(t) for t in tokens)


def other_node_lines(run: Any) -> list[str]:
    """For node 0 of several: the command each other node runs to join (its port fixed in the config now)."""
    args = distributed_arguments(run.config)
    if args.nnodes < 2 or args.node_rank != 0:
        return []
    if args.master_port is None:
        args.master_port = free_port()
        run.config["arguments"]["master_port"] = args.master_port
        from .run import atomic_write

        atomic_write(run.output_dir / "config.json", json.dumps(run.config, indent=2, ensure_ascii=False, default=str))
    return [
        f"node {rank} of {args.nnodes}: run there: {other_node_command(run, args, args.master_port, rank)}"
        for rank in range(1, args.nnodes)
    ]


def _mirror(run: Any, rows: Tail, events: Tail) -> None:
    for row in rows.records():
        with run._log_lock:
            run.rows.append(row)
        run._emit("metrics", row)
    for record in events.records():
        event, payload = record.get("event"), record.get("payload")
        if event == "log":
            run.log(payload)
        elif event:
            run._on_event(event, payload)


def train_group(run: Any, resume_from: Path | None) -> None:
    """Train ``run`` with ``torchrun`` and wait for the group; raise a one-line SwiftError if a rank failed."""
    folder: Path = run.output_dir
    args = distributed_arguments(run.config)
    device_type = (run.config.get("plan") or {}).get("device", "cpu")
    for stale in (folder / STOP_FILE, folder / EVENTS_FILE, *folder.glob("error-rank*.txt")):
        stale.unlink(missing_ok=True)
    port = int(args.master_port or free_port())
    command = launch_command(args, folder, port, resume_from)
    run.log(
        f"{args.num_processes} process(es) on this node, {args.world_size} in all, strategy {args.strategy}, "
        f"rendezvous {args.master_addr or '127.0.0.1'}:{port}"
    )
    rows, events = Tail(run.logging_file), Tail(folder / EVENTS_FILE, from_start=True)
    group = GroupProcess(command, folder, group_environment(device_type))
    run.group = group
    asked_at: float | None = None
    try:
        while group.process.poll() is None:
            _mirror(run, rows, events)
            if run._stop_event.is_set() and asked_at is None:
                (folder / STOP_FILE).touch()
                asked_at = time.monotonic()
            if asked_at is not None and time.monotonic() - asked_at > STOP_GRACE_S:
                group.terminate()
                raise SwiftError(f"the training processes did not stop within {STOP_GRACE_S:.0f} s and were ended")
            time.sleep(0.2)
        _mirror(run, rows, events)
    finally:
        if group.alive():
            group.terminate()
        GroupProcess.live.discard(group)
    if group.process.returncode != 0:
        raise SwiftError(first_error(folder, group.process.returncode))
