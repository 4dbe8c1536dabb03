"""A run folder on disk: its lock, its checkpoints, the final adapter, and another run's leftovers.

Two runs never mix in one folder:

* the lock ``.run.lock`` is created with ``O_EXCL``, so two kernels cannot both start in one folder;
* a new run in a folder that holds another run's files moves them into ``previous-<run id>/`` first;
* each checkpoint records the ``run_uid`` of the run that wrote it (``kernel_magics_run.json``), and a
  run resumes only from its own; a checkpoint whose ``trainer_state.json`` does not parse is skipped;
* the final adapter is written to a staging folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import SwiftConfigError, SwiftUsageError
from .records import atomic_write

if TYPE_CHECKING:
    pass

LOCK_NAME = ".run.lock"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
MARKER = "kernel_magics_run.json"  # inside each checkpoint: which run wrote it
# what a run leaves in its folder (moved aside as a whole when another run starts there)
RUN_FILES = (
    "config.json", "logging.jsonl", "dataset.jsonl", "error.txt", "adapter", "README.md", "rewards.py",
    "samples.jsonl", "events.jsonl", "launcher.log", "stop-requested", "group-finished.json",
)  # fmt: skip
RUN_FILE_PATTERNS = ("checkpoint-*", "error-rank*.txt", "reproduce-*", "torchrun-*", "accelerate-*", "slurm-*")
LOCK_WRITE_GRACE_S = 10.0  # a lock file still empty this soon after its creation is being written
_active_dirs: dict[str, str | None] = {}  # folder -> the run_uid that claimed it
_active_lock = threading.Lock()


def new_run_id(kind: str, model: str, root: Path) -> str:
    """A readable, unique id such as ``sft-20261123-101500-tiny``."""
    short = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(model).rstrip("/")).name)[:40].strip("-.") or "model"
    base = f"{kind}-{datetime.now():%Y%m%d-%H%M%S}-{short}"
    run_id, n = base, 2
    while (root / run_id).exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


def checked_run_id(value: Any, where: Path | str = "config.json") -> str:
    """A run id read from ``where``, usable as one file name: no path separator, no ``..``, no control character."""
    text = value if isinstance(value, str) else ""
    bad = (
        not text.strip()
        or text in (".", "..")
        or ".." in text
        or any(sep in text for sep in ("/", "\\", os.sep))
        or any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029" for ch in text)
    )
    if bad:
        shown, place = repr(str(value)[:40])[:70], str(where)
        place = place if len(place) <= 100 else "..." + place[-97:]
        raise SwiftConfigError(
            f"run id {shown} in {place} is not a plain name (no path separators, '..' or control characters); "
            "fix run_id there"
        )
    return text


def new_run_uid() -> str:
    """The identity of one run (two runs in one folder share the folder name, never this)."""
    return uuid.uuid4().hex


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and make sure files can be written there (one-line error if not)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SwiftConfigError(
            f"output_dir {folder} is not writable ({exc.strerror or exc}); pick another --output-dir"
        ) from None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_lock(lock: Path) -> dict[str, Any] | None:
    """The lock's content; {} while it is being written (just created, still empty); None if stale."""
    try:
        text = lock.read_text()
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return {} if age < LOCK_WRITE_GRACE_S else None
    pid = int(info.get("pid", 0)) if isinstance(info, dict) else 0
    if pid and pid != os.getpid() and pid_alive(pid):  # our own pid: _active_dirs knows our live runs
        return info
    return None


def active_lock(folder: Path) -> dict[str, Any] | None:
    """The lock of a run active in ``folder`` (this process or another live one), else None."""
    key = str(folder.resolve())
    with _active_lock:
        if key in _active_dirs:
            return {"pid": os.getpid()}
    return _read_lock(folder / LOCK_NAME)


def claim(folder: Path, owner: str | None = None) -> None:
    """Take the folder's lock, created exclusively: a second kernel (or thread) starting here is refused.
    ``owner`` (a run_uid) may claim a folder it holds already: the run that wrote its files then starts."""
    key = str(folder.resolve())
    with _active_lock:
        if key in _active_dirs and owner is not None and _active_dirs[key] == owner:
            return
        if key in _active_dirs:
            raise SwiftUsageError(f"a run is already active in {folder}; stop it first or pick another output_dir")
        _active_dirs[key] = owner
    lock = folder / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if holder is None:  # left by a process that ended: take it over
                lock.unlink(missing_ok=True)
                continue
            with _active_lock:
                _active_dirs.pop(key, None)
            raise SwiftUsageError(
                f"a run of process {holder.get('pid', '?')} is active in {folder}; stop it first or pick another "
                "output_dir"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "time": time.time()}))
        return
    with _active_lock:
        _active_dirs.pop(key, None)
    raise SwiftUsageError(f"cannot take the lock {lock}; remove it if no run is active there")


def release(folder: Path) -> None:
    with _active_lock:
        _active_dirs.pop(str(folder.resolve()), None)
    try:
        (folder / LOCK_NAME).unlink()
    except OSError:
        pass


def checkpoint_step(path: Path) -> int:
    match = CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else -1


def checkpoints_in(folder: Path, run_uid: str | None = None, notes: list[str] | None = None) -> list[Path]:
    """Complete checkpoints, oldest first: ``trainer_state.json`` (written last) parses, and when
    ``run_uid`` is given, the checkpoint was written by that run. What is skipped is said in ``notes``."""
    found = []
    for child in folder.glob("checkpoint-*") if folder.is_dir() else []:
        if not CHECKPOINT.match(child.name) or not (child / "trainer_state.json").is_file():
            continue
        try:
            json.loads((child / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if notes is not None:
                notes.append(f"skipped {child.name}: its trainer_state.json does not parse (an interrupted save)")
            continue
        if run_uid is not None and checkpoint_owner(child) != run_uid:
            if notes is not None:
                notes.append(f"skipped {child.name}: another run wrote it")
            continue
        found.append((checkpoint_step(child), child))
    return [p for _, p in sorted(found)]


def checkpoint_owner(checkpoint: Path) -> str | None:
    try:
        return json.loads((checkpoint / MARKER).read_text(encoding="utf-8")).get("run_uid")
    except (OSError, ValueError, AttributeError):
        return None


def mark_checkpoint(checkpoint: Path, run_id: str, run_uid: str) -> None:
    """Record in ``checkpoint`` which run wrote it."""
    if checkpoint.is_dir():
        atomic_write(checkpoint / MARKER, json.dumps({"run_id": run_id, "run_uid": run_uid}))


def set_aside_previous_run(folder: Path) -> str | None:
    """Move another run's files out of ``folder`` into ``previous-<its run id>/``; the one-line note, or None."""
    from .run_config import RunConfig, read_config_file

    config = read_config_file(folder)
    is_run_config = config is not None and "run_id" in config and "trainer" in config
    checkpoints = [p for p in folder.glob("checkpoint-*") if CHECKPOINT.match(p.name)]
    adapter = (folder / "adapter" / "adapter_config.json").is_file()
    if not (is_run_config or checkpoints or adapter):
        return None  # nothing of a run here (a config.json of something else stays where it is)
    leftovers = [folder / name for name in RUN_FILES if (folder / name).exists()]
    leftovers += sorted({p for pattern in RUN_FILE_PATTERNS for p in folder.glob(pattern)})
    leftovers = [p for p in leftovers if p.name != "config.json" or is_run_config]
    old = str(RunConfig.from_dict(config).run_id or "run") if is_run_config else "run"  # type: ignore[arg-type]
    old = re.sub(r"[^A-Za-z0-9._-]+", "-", old)[:60]
    aside = folder / f"previous-{old}-{datetime.now():%Y%m%d-%H%M%S}"
    n = 2
    while aside.exists():
        aside, n = aside.with_name(f"{aside.name.rsplit('~', 1)[0]}~{n}"), n + 1
    aside.mkdir(parents=True)
    for path in leftovers:
        os.replace(path, aside / path.name)
    return f"{folder} held another run's files ({old}); moved them to {aside.name}/"


def publish_folder(staging: Path, final: Path) -> None:
    """Put the finished ``staging`` folder at ``final`` by renames (a reader never sees half of it)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def save_adapter(trainer: Any, adapter_dir: Path, main_process: bool = True) -> None:
    """The trained adapter (or full model) and its tokenizer, written to a staging folder and renamed into
    place, so a half-written adapter is never taken for a finished one. Every rank of a process group calls
    it (the trainer writes on the main process only); ``main_process`` publishes."""
    staging = adapter_dir.parent / f".{adapter_dir.name}.staging"
    trainer.save_model(str(staging))
    tokenizer = getattr(trainer, "processing_class", None)
    if main_process and tokenizer is not None:
        tokenizer.save_pretrained(str(staging))
    if main_process:
        publish_folder(staging, adapter_dir)
