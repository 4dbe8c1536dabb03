"""The kernel's side of a run trained by a process group: start it, mirror rank 0's logs into the
:class:`~.run.Run` (so the dashboard, ``.metrics``, ``.status`` and ``.wait()`` are those of a one-process
run), pass a stop request on, and turn the group's end into the run's final state."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import SwiftError
from ..methods.reward_calls import STOPPED_MID_STEP
from .distributed import EVENTS_FILE, FINISHED_FILE, STOP_FILE, DistributedArguments, child_environment, free_port
from .folders import pid_alive

if TYPE_CHECKING:
    from .run_config import RunConfig

STOP_GRACE_S = 300.0  # after a stop request, ranks that have not exited by then are terminated
LAUNCH_LOG = "launcher.log"


def set_processes(run: Any, num_processes: int) -> None:
    """Record another number of processes for the run's next start (its resume)."""
    from dataclasses import replace

    changed = replace(distributed_arguments(run.config), num_processes=num_processes)
    changed.check_distributed()
    run.config.arguments["num_processes"] = num_processes
    run.config.write(run.output_dir)


class Tail:
    """New complete JSON lines of a file that another process appends to."""

    def __init__(self, path: Path, from_start: bool = False, offset: int | None = None) -> None:
        self.path = path
        if offset is not None:
            self.offset = offset
        else:
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


def distributed_arguments(config: RunConfig) -> DistributedArguments:
    stored = config.arguments
    return DistributedArguments(**{f.name: stored[f.name] for f in fields(DistributedArguments) if f.name in stored})


def other_node_command(run: Any, args: DistributedArguments, port: int, node_rank: int) -> str:
    """The CLI line that joins node ``node_rank`` to this run's group (same flags, its own rank)."""
    import shlex

    from ..methods.registry import command_of, method_of
    from ..script import command_flags

    config = run.config
    name = method_of(config).name
    arguments = dict(config.arguments, node_rank=node_rank, master_port=port, master_addr=args.master_addr)
    dataset = config.dataset_copy or arguments.get("dataset")
    tokens = ["python", "-m", "kernel_magics", name, "--model", config.model, "--dataset", str(dataset)]
    tokens += command_flags(command_of(name), arguments)
    return " ".join(shlex.quote(t) for t in tokens)


def other_node_lines(run: Any) -> list[str]:
    """For node 0 of several: the command each other node runs to join (its port fixed in the config now)."""
    args = distributed_arguments(run.config)
    if args.nnodes < 2 or args.node_rank != 0:
        return []
    if args.master_port is None:
        args.master_port = free_port()
        run.config.arguments["master_port"] = args.master_port
        run.config.write(run.output_dir)
    return [
        f"node {rank} of {args.nnodes}: run there: {other_node_command(run, args, args.master_port, rank)}"
        for rank in range(1, args.nnodes)
    ]


def mirror(run: Any, rows: Tail, events: Tail) -> None:
    """Bring what the training process appended (metric rows, events) into the kernel's ``run``."""
    for row in rows.records():
        run.add_row(row, written=True)
    for record in events.records():
        event, payload = record.get("event"), record.get("payload")
        if event == "log":
            run.log(payload)
        elif event:
            run.on_event(event, payload)


def train_group(run: Any, resume_from: Path | None, mirror_logs: bool = True) -> None:
    """Train ``run`` with ``torchrun`` and wait for the group; raise a one-line SwiftError if a rank failed.

    ``mirror_logs``: bring rank 0's rows and events into ``run`` (a kernel watching the group itself); the run's
    own process (:mod:`.runner`) leaves them in the folder for the kernels that watch it."""
    folder: Path = run.output_dir
    args = distributed_arguments(run.config)
    device_type = run.config.plan.device
    for stale in (folder / FINISHED_FILE, *folder.glob("error-rank*.txt")):  # an earlier start's outcome
        stale.unlink(missing_ok=True)
    port = int(args.master_port or free_port())
    command = launch_command(args, folder, port, resume_from)
    run.log(
        f"{args.num_processes} process(es) on this node, {args.world_size} in all, strategy {args.strategy}, "
        f"rendezvous {args.master_addr or '127.0.0.1'}:{port}"
    )
    rows, events = Tail(run.logging_file), Tail(folder / EVENTS_FILE, from_start=True)
    trusted = run.config.trust_remote_code
    group = GroupProcess(command, folder, group_environment(device_type, trusted))
    run.group = group
    asked_at: float | None = None
    try:
        while group.process.poll() is None:
            if mirror_logs:
                mirror(run, rows, events)
            if run.stop_request.is_set() and asked_at is None:
                (folder / STOP_FILE).touch()
                asked_at = time.monotonic()
            if asked_at is not None and time.monotonic() - asked_at > STOP_GRACE_S:
                group.terminate()
                raise SwiftError(f"the training processes did not stop within {STOP_GRACE_S:.0f} s and were ended")
            time.sleep(0.2)
        if mirror_logs:
            mirror(run, rows, events)
    finally:
        if group.alive():
            group.terminate()
        GroupProcess.live.discard(group)
    if group.process.returncode != 0:
        line = first_error(folder, group.process.returncode)
        if asked_at is not None and f": {STOPPED_MID_STEP} " in line:  # a rank gave up a hanging reward to stop
            run.log(line)
            return
        if not finished_before_exit(run):
            raise SwiftError(line)
        run.log(f"warning: {line}, after the final checkpoint and the adapter were written; the run is complete")


def finished_before_exit(run: Any) -> bool:
    """Did rank 0 publish this start's adapter (``group-finished.json``, removed when the group starts)?"""
    marker = run.output_dir / FINISHED_FILE
    try:
        written = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(written, dict)
        and Path(str(written.get("adapter"))).resolve() == run.adapter_dir.resolve()
        and run.adapter_dir.is_dir()
    )


def launch_command(args: DistributedArguments, folder: Path, port: int, resume_from: Path | None) -> list[str]:
    """The ``torchrun`` command line that trains the run in ``folder`` (rank 0 writes its logs)."""
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={args.num_processes}", f"--nnodes={args.nnodes}", f"--node-rank={args.node_rank}",
        f"--master-addr={args.master_addr or '127.0.0.1'}", f"--master-port={port}",
        "-m", "kernel_magics.train.runtime.worker", str(folder),
    ]  # fmt: skip
    return command + (["--resume", str(resume_from)] if resume_from else [])


def group_environment(device_type: str, trust_remote_code: bool = False) -> dict[str, str]:
    """The ranks' environment: this checkout first on the path; one thread each on the CPU; the kernel's trust
    in the model's remote code (ranks read the run folder as data, and never take it from there)."""
    env = child_environment()
    env["KERNEL_MAGICS_TRUST_REMOTE_CODE"] = "1" if trust_remote_code else "0"
    env.setdefault("OMP_NUM_THREADS", "1" if device_type == "cpu" else "4")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def first_error(folder: Path, returncode: int) -> str:
    """One line naming the rank that failed first: torchrun's "Root Cause" (a rank ended by a signal, such as
    the out-of-memory killer's), else that rank's own error line, else the earliest error line written."""
    errors = {p.stem.removeprefix("error-rank"): p for p in folder.glob("error-rank*.txt")}

    def own_line(rank: str) -> str:
        text = errors[rank].read_text(encoding="utf-8", errors="replace").splitlines()
        return f"rank {rank}: {text[0] if text else 'failed'}"[:300]

    try:
        report = (folder / LAUNCH_LOG).read_text(encoding="utf-8", errors="replace").split("Root Cause", 1)[1]
    except (OSError, IndexError):
        report = ""
    rank = re.search(r"rank\s*:\s*(\d+)", report)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", report)
    if rank and code and int(code.group(1)) < 0:
        number = -int(code.group(1))
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"rank {rank.group(1)} was ended by signal {number} ({name}){hint}; the other ranks were stopped"
    if rank and rank.group(1) in errors:
        return own_line(rank.group(1))
    if errors:
        return own_line(min(errors, key=lambda r: errors[r].stat().st_mtime))
    cause = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return f"a training process ended with {cause}; see {folder / LAUNCH_LOG}"


class GroupProcess:
    """The torchrun process of one run and the ranks it starts (torchrun gives each rank its own session,
    so a stop reaches them by their process ids, not by one process group)."""

    live: set[GroupProcess] = set()

    def __init__(self, command: list[str], folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        with open(folder / LAUNCH_LOG, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.seen: set[int] = {self.process.pid}
        GroupProcess.live.add(self)

    @property
    def pgid(self) -> int:
        return self.process.pid

    def members(self) -> set[int]:
        """torchrun and every process below it that is alive now (remembered, so orphans are found too)."""
        self.seen |= descendants(self.process.pid)
        return {pid for pid in self.seen if pid_alive(pid)}

    def alive(self) -> bool:
        return bool(self.members())

    def terminate(self, grace_s: float = 10.0) -> None:
        """SIGTERM to torchrun (it ends its ranks), then SIGKILL to every member still alive."""
        self.members()
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            targets = [self.process.pid] if sig == signal.SIGTERM else sorted(self.members())
            for pid in targets:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    continue
            deadline = time.monotonic() + wait
            while self.members() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.members():
                break
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        GroupProcess.live.discard(self)


def descendants(root: int) -> set[int]:
    """Process ids below ``root`` (Linux ``/proc``; psutil elsewhere when installed)."""
    parents: dict[int, int] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
    else:
        try:
            import psutil
        except ImportError:
            return set()
        return {child.pid for child in psutil.Process(root).children(recursive=True)}
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def stop_all_groups() -> None:
    """At interpreter exit: no rank outlives the kernel that started it."""
    for group in list(GroupProcess.live):
        group.terminate(grace_s=5.0)


import atexit  # noqa: E402 - registered next to the function it calls

atexit.register(stop_all_groups)
