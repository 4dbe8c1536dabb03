"""What every ``km.sft`` / ``km.dpo`` call does before its trainer runs, in the caller's thread.

1. :func:`check_start` — the arguments, the method name and the output folder (not active, writable), so
   mistakes fail at once with one line;
2. :func:`plan_run` — the memory estimate from ``config.json`` and the :class:`~.plan.Plan` for the device;
3. :func:`write_run` — the run folder: its lock taken first (held until the run ends), another run's files
   moved aside, in-memory rows copied to ``dataset.jsonl``, the :class:`~.run_config.RunConfig` written as
   ``config.json``, and the :class:`~.run.Run` with its first log lines.

The one launcher, :func:`kernel_magics.train.runtime.start.launch`, composes them; the method modules keep only
what differs (their registry entry's ``prepare``, ``record`` and ``trainer`` hooks).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...device import DeviceInfo
from ..planning.plan import Plan
from .run_config import RunConfig


@dataclass
class StartCheck:
    """What :func:`check_start` found: the run folder (None: a new one under ``root``) and trust."""

    folder: Path | None
    root: Path
    trust_remote_code: bool


def check_start(args: Any) -> StartCheck:
    """Normalise and check ``args`` (a method's argument dataclass) and the output folder."""
    from ...config import settings
    from ...device import select_device
    from ...errors import SwiftUsageError
    from ..planning.plan import DTYPES, METHODS, make_plan
    from .folders import active_lock, check_writable

    if isinstance(args.target_modules, str):
        args.target_modules = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    args.check()
    if args.method not in METHODS or args.dtype not in DTYPES:
        make_plan(  # raises the one-line error
            args.method, select_device("cpu"), batch_size=1, grad_accum=1, gradient_checkpointing=None, dtype=args.dtype
        )
    folder = Path(args.output_dir).expanduser() if args.output_dir is not None else None
    if folder is not None and folder.exists() and active_lock(folder):
        raise SwiftUsageError(f"a run is already active in {folder}; stop it first or pick another output_dir")
    root = settings.workspace_path / "runs"
    check_writable(folder if folder is not None else root)
    trust = settings.trust_remote_code if args.trust_remote_code is None else args.trust_remote_code
    return StartCheck(folder, root, bool(trust))


def plan_run(
    args: Any, model_path: Path, device: DeviceInfo, rows_per_step: int | None = None
) -> tuple[Plan, dict[str, float]]:
    """The plan for ``args`` on ``device`` and the per-method memory estimates (GB) it used.

    ``rows_per_step``: sequences in one micro-batch for the estimate (a preference pair is two).
    """
    from ..planning.estimate import estimate
    from ..planning.levers import apply_levers
    from ..planning.plan import make_plan
    from .distributed import check_group_device, is_group

    estimates: dict[str, float] = {}
    try:
        estimates = estimate(
            str(model_path),
            max_length=args.max_length,
            batch_size=rows_per_step or args.batch_size,
            lora_r=args.lora_r,
            target_modules=args.target_modules,
            gradient_checkpointing=args.gradient_checkpointing,
            device=args.device,
            image_pixels=getattr(args, "max_pixels", None),
            train_vision=bool(getattr(args, "train_vision", False)),
            dtype=None if args.dtype == "auto" else args.dtype,
        ).totals
    except Exception:  # noqa: BLE001 - an unusual config must not block training; the plan then skips it
        pass
    if is_group(vars(args)):
        check_group_device(args, device.type)
    plan = make_plan(
        args.method,
        device,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        gradient_checkpointing=args.gradient_checkpointing,
        estimates=estimates,
        optim=args.optim,
        dtype=args.dtype,
    )
    return apply_levers(plan, args, device, model_path), estimates


def versions() -> dict[str, str]:
    """Python and the versions of the packages a run depends on (stored in its config)."""
    import importlib.metadata as md
    import sys

    out = {"python": sys.version.split()[0]}
    for name in ("kernel_magics", "torch", "transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def recorded_arguments(args: Any) -> dict[str, Any]:
    """The :class:`~.run_config.RunConfig` fields that a method's argument dataclass ``args`` decides."""
    return {
        "method": args.method,
        "arguments": args.to_config(),
        "max_steps": args.max_steps,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "world_size": getattr(args, "world_size", 1),
        "strategy": getattr(args, "strategy", "ddp"),
    }


def device_record(device: DeviceInfo) -> dict[str, Any]:
    """The device a run was planned for, as its config records it."""
    return {"type": device.type, "name": device.name, "free_gb": device.memory_free_gb, "reason": device.reason}


def write_run(
    start: StartCheck,
    config: RunConfig,
    rows: list[dict[str, Any]] | None,
    lines: Sequence[str] = (),
    verbose: bool = True,
) -> Any:
    """Create the run folder with ``config`` as its ``config.json``; return the (not yet started) :class:`Run`.

    What the folder and the moment decide is filled in here: ``run_id`` (the folder's name), ``run_uid``,
    ``created``, ``versions`` and ``dataset_copy``. ``rows``: in-memory rows to keep as ``dataset.jsonl`` (so
    the run can resume and be reproduced), or None when the dataset is a path. ``lines`` (the plan, the data
    report) are logged, and printed when ``verbose``, followed by the run's folder.
    """
    from .folders import claim, new_run_id, new_run_uid, release, set_aside_previous_run
    from .records import atomic_write
    from .run import Run

    folder = start.folder or start.root / new_run_id(config.kind, config.model, start.root)
    folder.mkdir(parents=True, exist_ok=True)
    config.run_uid = new_run_uid()
    claim(folder, owner=config.run_uid)  # before anything in the folder changes; the run's start keeps it
    try:
        moved = set_aside_previous_run(folder)  # another run's checkpoints never mix with this one's
        if moved:
            lines = [moved, *lines]
        for stale in ("logging.jsonl", "error.txt"):
            if (folder / stale).exists():
                (folder / stale).unlink()
        config.dataset_copy = None
        if rows is not None:
            config.dataset_copy = str(folder / "dataset.jsonl")
            text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
            atomic_write(Path(config.dataset_copy), text)
        config.run_id, config.created, config.versions = folder.name, time.strftime("%Y-%m-%dT%H:%M:%S"), versions()
        config.write(folder)
        run = Run(folder, config)
        from .group import other_node_lines

        for line in [*lines, f"run {folder.name} -> {folder}", *other_node_lines(run)]:
            run.log(line)
            if verbose:
                print(line, flush=True)
        return run
    except BaseException:
        release(folder)
        raise


def in_memory(dataset: Any) -> bool:
    """Is ``dataset`` rows in memory (a list, DataFrame, ``datasets.Dataset``) rather than a path or id?"""
    return dataset is not None and not isinstance(dataset, (str, os.PathLike))


def rows_in_memory(dataset: Any) -> list[dict[str, Any]] | None:
    """The rows of an in-memory ``dataset`` as plain dicts (for ``dataset.jsonl``); None for a path or id."""
    if not in_memory(dataset):
        return None
    if isinstance(dataset, list):
        return dataset
    if type(dataset).__name__ == "DataFrame":
        return dataset.to_dict(orient="records")
    if hasattr(dataset, "to_list"):
        return dataset.to_list()
    return list(dataset)
