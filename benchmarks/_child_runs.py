"""How ``anchors.py`` runs each tool: a fresh child process whose output is read line by line as it arrives, so
the parent times each step log (and reads its loss), the km.sft driver's ``KM-RUN`` markers and the batch shapes
``_step_shapes.py`` prints. km.sft trains in its own worker process, whose output does not reach the driver's:
its driver prints the run's logged steps after the run with their wall times (``km_time=``, the time the worker
logged each step) and the shapes ``_step_shapes.py`` wrote to a file from inside the worker (imported there by a
``sitecustomize`` as soon as that process imports ``transformers.trainer``); a line with ``km_time=`` is timed by
it, every other line by its arrival."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

STEP_LINE = re.compile(r"""['"]?loss['"]?\s*[:=]\s*['"]?([0-9.]+)""")  # HF / LF dicts, swift's json lines
WALL_TIME = re.compile(r"km_time=([0-9.]+)")
SHAPE_LINE = re.compile(r"KM-STEP-SHAPE (\S+) (.*)")  # from _step_shapes.py: the shape, then key=value fields
FIELD = re.compile(r"(\w+)=(\S+)")


# km.sft's worker process imports _step_shapes when it imports transformers.trainer (and no other process does)
SITECUSTOMIZE = """
import importlib.abc, importlib.util, sys


class _ThenStepShapes(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "transformers.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            import _step_shapes  # noqa: F401

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _ThenStepShapes())
"""


def shapes_path(out: Path, worker: bool = False) -> str:
    """A folder holding only ``_step_shapes.py``, for a child's PYTHONPATH (the tool's own imports see nothing else
    of this folder); ``worker``: and a ``sitecustomize.py`` that imports it in whichever process imports
    ``transformers.trainer`` (km.sft's worker)."""
    folder = out / "shapes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_step_shapes.py").write_text((Path(__file__).parent / "_step_shapes.py").read_text())
    if worker:
        (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return str(folder)


@dataclass
class Timing:
    startup_s: float
    step_s: list[float] = field(default_factory=list)
    warm_startup_s: float | None = None
    batches: list[str] = field(default_factory=list)  # each training step's batch shape, e.g. "4x64"
    forward_backward_s: list[float] = field(default_factory=list)  # each step's Trainer.training_step
    losses: list[float] = field(default_factory=list)  # every step's logged loss
    compute: set[str] = field(default_factory=set)  # base weights / matmul output dtype, e.g. "bf16/bf16"
    step_cpu_s: list[float] = field(default_factory=list)  # CPU seconds of the training process per step


@dataclass
class ChildLines:
    """Seconds from a child's start to each of its step logs (and their losses), KM-RUN markers and batch shapes."""

    steps: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)
    shapes: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)  # arrival, shape, its fields

    def timing(self, until: float = float("inf"), skip: int = 0) -> Timing:
        """The start-up, step gaps, batches and losses of the run whose step logs arrive before ``until``."""
        steps = [t for t in self.steps if t < until]
        shapes = [(shape, fields) for t, shape, fields in self.shapes if t < until]
        seconds = [float(fields["seconds"]) for _, fields in shapes][skip:]
        timing = Timing(steps[0], gaps(steps, skip), None, [shape for shape, _ in shapes], seconds)
        timing.losses = self.losses[: len(steps)]
        timing.compute = {fields.get("compute", "?") for _, fields in shapes}
        timing.step_cpu_s = gaps([float(fields["proc"]) for _, fields in shapes if "proc" in fields], skip)
        return timing


def find_tool(python: str | None, module: str, label: str) -> str | None:
    """``python`` if it imports ``module``, else None after one line saying what is missing."""
    if not python:
        print(f"{label}: not given (--{'lf' if 'llama' in module else 'swift'}-python ENV/bin/python); left out")
        return None
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["not found"])[-1][:160]
        print(f"{label}: {python} cannot import {module} ({last}); left out")
        return None
    return python


def timed_lines(command: list[str], env: dict[str, str], log: Path) -> ChildLines:
    """Run ``command``; when its step logs, KM-RUN markers and batch shapes arrive."""
    start, wall_start = time.perf_counter(), time.time()
    seen = ChildLines()
    with open(log, "w") as sink:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in child.stdout:  # type: ignore[union-attr]
            sink.write(line)
            wall = WALL_TIME.search(line)
            now = float(wall.group(1)) - wall_start if wall else time.perf_counter() - start
            shape = SHAPE_LINE.search(line)
            if line.startswith("KM-RUN"):
                seen.runs.append(now)
            elif shape:
                seen.shapes.append((now, shape.group(1), dict(FIELD.findall(shape.group(2)))))
            elif (step := STEP_LINE.search(line)) and "train_runtime" not in line and "train_loss" not in line:
                seen.steps.append(now)
                seen.losses.append(float(step.group(1)))
        code = child.wait()
    if code != 0:
        raise SystemExit(f"{command[0]} ... exited {code}; its output is in {log}")
    return seen


def child_env(*extra_paths: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.update(TOKENIZERS_PARALLELISM="false", DISABLE_VERSION_CHECK="1", WANDB_DISABLED="true")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*extra_paths, env.get("PYTHONPATH")) if p)
    return env


def gaps(times: list[float], skip: int) -> list[float]:
    kept = times[skip:]
    return [b - a for a, b in zip(kept, kept[1:], strict=False)]
