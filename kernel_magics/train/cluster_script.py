"""``%swift export-script RUN --launcher torchrun|accelerate|slurm``: a script that trains a run's recorded
configuration on a cluster with an existing launcher.

Next to the script it writes ``<stem>-run/``: the run's ``config.json`` (model by name, data copied beside it,
``num_processes`` / ``nnodes`` as the launcher sets them) that every rank of
:mod:`kernel_magics.train.runtime.worker` trains from, exactly as a process group started from the notebook does.

The script is data, never code: recorded values become shell-quoted words (defaults the environment may
override), text in ``#`` lines is escaped onto one line, and the Slurm job name keeps only ``[A-Za-z0-9._-]``.
The run id (a plain file name) and the rendezvous address and port are checked where they are read.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

from ..errors import SwiftConfigError, SwiftUsageError, did_you_mean
from .runtime.distributed import check_host
from .runtime.folders import checked_run_id
from .runtime.run_config import RunConfig

LAUNCHERS = ("torchrun", "accelerate", "slurm")


def _run_folder(run: Any, folder: Path) -> Path:
    """A fresh run folder holding the run's config with its data beside it and the model by name."""
    folder.mkdir(parents=True, exist_ok=True)
    config = RunConfig.from_dict(run.config.to_dict())  # a copy
    source = config.dataset_copy or config.arguments.get("dataset")
    if source and Path(str(source)).is_file():
        target = folder / Path(str(source)).name
        if Path(str(source)).resolve() != target.resolve():
            shutil.copy2(source, target)
        config.dataset_copy = target.name  # relative: the worker runs in this folder
    config.model_path, config.run_id = config.model, folder.name
    config.write(folder)
    return folder


def _count(args: dict[str, Any], name: str) -> int:
    try:
        return max(int(args.get(name) or 1), 1)
    except (TypeError, ValueError):
        raise SwiftConfigError(
            f"{name} in the run's config.json must be an integer, got {repr(args.get(name))[:60]}"
        ) from None


def _check_rendezvous(args: dict[str, Any]) -> None:
    """The run's recorded ``master_addr`` / ``master_port``, checked (config.json may have been edited)."""
    if args.get("master_addr"):
        check_host(args["master_addr"])
    port = args.get("master_port") or 29500
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SwiftConfigError(f"master_port in the run's config.json must be in 1..65535, got {repr(port)[:60]}")


def _rendezvous(args: dict[str, Any]) -> list[str]:
    """Defaults as quoted words first, then the variables the launcher reads (the environment may set them)."""
    q = shlex.quote
    return [
        f"DEFAULT_NPROC={_count(args, 'num_processes')}  # processes (GPUs) per node",
        f"DEFAULT_NNODES={_count(args, 'nnodes')}",
        f"DEFAULT_MASTER_ADDR={q(str(args.get('master_addr') or '127.0.0.1'))}",
        f"DEFAULT_MASTER_PORT={q(str(args.get('master_port') or 29500))}",
        'NPROC="${NPROC:-$DEFAULT_NPROC}"',
        'NNODES="${NNODES:-$DEFAULT_NNODES}"',
        'NODE_RANK="${NODE_RANK:-0}"',
        'MASTER_ADDR="${MASTER_ADDR:-$DEFAULT_MASTER_ADDR}"',
        'MASTER_PORT="${MASTER_PORT:-$DEFAULT_MASTER_PORT}"',
    ]


def _comment(text: Any) -> str:
    """``text`` for a ``#`` line: one line, control characters escaped (a newline cannot end the comment)."""
    return str(text).encode("unicode_escape").decode("ascii")


def _job_name(run_id: str) -> str:
    """A Slurm job name: letters, digits, ``._-`` only (``#SBATCH`` lines are parsed by sbatch, not bash)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"km-{run_id}")[:60]


TORCHRUN = (
    '"$PY" -m torch.distributed.run --nproc-per-node "$NPROC" --nnodes "$NNODES" --node-rank "$NODE_RANK" '
    '--master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" -m kernel_magics.train.runtime.worker "$RUN"'
)
ACCELERATE = (
    '"$PY" -m accelerate.commands.launch --num_processes "$((NPROC * NNODES))" --num_machines "$NNODES" '
    '--machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" '
    '--multi_gpu -m kernel_magics.train.runtime.worker "$RUN"'
)


def _script(launcher: str, run_dir: str, args: dict[str, Any], run_id: str) -> str:
    q = shlex.quote
    head = ["#!/usr/bin/env bash"]
    if launcher == "slurm":
        nodes, gpus = _count(args, "nnodes"), _count(args, "num_processes")
        head += [
            f"#SBATCH --job-name={_job_name(run_id)}",
            f"#SBATCH --nodes={nodes}",
            "#SBATCH --ntasks-per-node=1  # one torchrun per node; it starts the node's ranks",
            f"#SBATCH --gpus-per-node={gpus}",
            "#SBATCH --output=%x-%j.log",
        ]
    head += [
        f"# Trains kernel_magics run {_comment(run_id)}'s configuration with {launcher} (written by export-script).",
        "# Every node needs kernel_magics, the model (by name or path) and this folder.",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        f'RUN="$HERE"/{q(run_dir)}',
        'PY="${KM_PYTHON:-python3}"',
        *_rendezvous(args),
    ]
    if launcher == "slurm":
        body = [
            'NNODES="$SLURM_NNODES"',
            'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
            "export NPROC NNODES MASTER_ADDR MASTER_PORT RUN PY",
            "srun bash -c 'NODE_RANK=$SLURM_NODEID; " + TORCHRUN.replace("'", "'\\''") + "'",
        ]
    else:
        body = [TORCHRUN if launcher == "torchrun" else ACCELERATE]
    return "\n".join(head + body) + "\n"


def write_cluster_script(run: Any, launcher: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the ``launcher`` script for ``run`` (and its run folder beside it); return the script's path."""
    if launcher not in LAUNCHERS:
        raise SwiftUsageError(
            f"launcher must be one of {', '.join(LAUNCHERS)}, got '{launcher}'{did_you_mean(str(launcher), LAUNCHERS)}"
        )
    run_id = checked_run_id(run.name, Path(run.output_dir) / "config.json")
    arguments = dict(run.config.arguments)
    _check_rendezvous(arguments)
    suffix = ".sbatch" if launcher == "slurm" else ".sh"
    name = f"{launcher}-{run_id}{suffix}"
    target = Path(path).expanduser() if path else Path(run.output_dir) / name
    if target.is_dir() or not target.suffix:
        target = target / name
    target.parent.mkdir(parents=True, exist_ok=True)
    run_dir = _run_folder(run, target.parent / f"{target.stem}-run")
    text = _script(launcher, run_dir.name, arguments, run_id)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)
    return target
