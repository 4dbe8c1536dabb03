"""Which lm-eval tasks a run names: lm-eval's registry, the packaged tasks and local task YAMLs.

* A name (``arc_easy``, ``mmlu``, ``km_general_en``) is looked up in lm-eval's registry plus the tasks
  packaged here (``kernel_magics/bench/tasks``); an unknown name fails with the closest registered ones.
* A path to a task YAML, or to a folder of them, registers that folder with lm-eval (``include_path``)
  and selects the tasks its files declare. ``data_files`` in them are read by ``datasets`` relative to
  the working directory, so give absolute paths (the packaged tasks are rewritten with absolute paths
  into the cache once, as they live inside the installed package).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..argspec import csv_list
from ..errors import SwiftConfigError, SwiftUsageError

PACKAGED_DIR = Path(__file__).parent / "tasks"
PACKAGED_TASKS = ("km_general_en", "km_ceval_zh")
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")  # ``datasets`` builders that read local files
_UNREACHABLE = (
    "offline",
    "connect",
    "resolve",
    "not found",
    "couldn't find",
    "could not find",
    "doesn't exist",
    "network",
)


@dataclass
class TaskSelection:
    """The task names to hand to lm-eval and the folders to register first."""

    names: list[str]
    include_paths: list[str] = field(default_factory=list)
    files: dict[str, Path | None] = field(default_factory=dict)
    manager: Any = None

    def dataset_of(self, name: str) -> str | None:
        """The ``dataset_path`` of task ``name``, following ``include:`` (None for groups and tags)."""
        path = self.files.get(name)
        for _ in range(4):
            if path is None or not path.is_file():
                return None
            config = _read_yaml(path)
            if isinstance(config.get("dataset_path"), str):
                return config["dataset_path"]
            include = config.get("include")
            path = path.parent / include if isinstance(include, str) else None
        return None


class _AnyTagLoader(yaml.SafeLoader):
    """A YAML loader that reads lm-eval's ``!function`` tags as plain strings."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_AnyTagLoader)  # noqa: S506 - safe subclass
    except (OSError, yaml.YAMLError) as exc:
        raise SwiftConfigError(f"cannot read the task file {path}: {str(exc).splitlines()[0]}") from None
    return data if isinstance(data, dict) else {}


def packaged_tasks_dir() -> Path:
    """The packaged task YAMLs with their ``data_files`` made absolute, written once into the cache."""
    from ..config import settings

    sources = sorted(PACKAGED_DIR.glob("*.yaml")) + sorted((PACKAGED_DIR / "data").glob("*"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).hexdigest()[:12]
    target = settings.cache_path / "lm_eval_tasks" / digest
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    try:
        for source in PACKAGED_DIR.glob("*.yaml"):
            config = _read_yaml(source)
            files = config.get("dataset_kwargs", {}).get("data_files", {})
            for split, name in files.items():
                files[split] = str((PACKAGED_DIR / name).resolve())
            (staging / source.name).write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
        os.replace(staging, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _looks_like_path(item: str) -> bool:
    return item.endswith((".yaml", ".yml")) or os.sep in item or item.startswith((".", "~")) or Path(item).is_dir()


def _local_tasks(item: str) -> dict[str, Path]:
    """Task names declared by a YAML file (or by the YAMLs of a folder) -> their files."""
    path = Path(item).expanduser()
    if not path.exists():
        raise SwiftUsageError(f"task file or folder '{item}' does not exist")
    files = [path] if path.is_file() else sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")])
    found = {}
    for file in files:
        config = _read_yaml(file)
        name = config.get("task") or config.get("group")
        if isinstance(name, str) and name:
            found[name] = file.resolve()
    if not found:
        raise SwiftUsageError(f"'{item}' declares no lm-eval task (a YAML with a 'task:' key)")
    return found


_NAME_LINE = re.compile(r"^[\"']?(task|group|tag)[\"']?:[ \t]*(.*?)[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]+-[ \t]+[\"']?([^\s\"']+)[\"']?[ \t]*$")


@functools.lru_cache(maxsize=1)
def registry_files() -> dict[str, Path]:
    """lm-eval's task, group and tag names -> the YAML declaring them, from a quick scan of its files (a
    few seconds; lm-eval's own index parses every file and takes ten times longer)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise SwiftConfigError("benchmarks need lm-eval: pip install 'kernel_magics[eval]'")
    names: dict[str, Path] = {}
    for file in sorted((Path(spec.origin).parent / "tasks").rglob("*.yaml")):
        in_tags = False
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _NAME_LINE.match(line)
            if match:
                key, value = match.groups()
                in_tags = key == "tag" and not value
                value = value.strip("'\"")
                if value and not value.startswith(("[", "{", "!")):
                    names.setdefault(value, file)
            elif in_tags and (item := _LIST_ITEM.match(line)):
                names.setdefault(item.group(1), file)
            elif line.strip():
                in_tags = False
    return names


def _registry_names() -> list[str]:
    """Every name lm-eval's TaskManager knows (built once per lm-eval version, then read from the cache)."""
    import json

    import lm_eval

    from ..config import settings

    cache = settings.cache_path / "lm_eval_tasks" / f"registry-{getattr(lm_eval, '__version__', 'x')}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    names = list(task_manager([], include_defaults=True).all_tasks)
    cache.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".registry-", dir=cache.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(names, out)
    os.replace(tmp, cache)
    return names


def select_tasks(tasks: Sequence[str] | str | None) -> TaskSelection:
    """Resolve ``tasks`` (names, YAML paths or folders, or ``"a,b"``) against lm-eval's registry."""
    items = csv_list(tasks or [])
    if not items:
        raise SwiftUsageError(f"no tasks given; e.g. tasks=['{PACKAGED_TASKS[0]}'] or a path to a task YAML")
    packaged = packaged_tasks_dir()
    local = {name: packaged / f"{name}.yaml" for name in PACKAGED_TASKS}
    include, names = [str(packaged)], []
    for item in items:
        if _looks_like_path(item):
            found = _local_tasks(item)
            local.update(found)
            names += list(found)
            include.append(str(Path(item).expanduser().resolve().parent if Path(item).is_file() else Path(item)))
        else:
            names.append(item)
    registry = registry_files()
    for name in names:
        if name not in local and name not in registry and name not in _registry_names():
            close = difflib.get_close_matches(name, [*local, *_registry_names()], n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; km.benchmark_tasks() lists them"
            raise SwiftUsageError(f"unknown lm-eval task '{name}'{hint}")
    files = {name: local.get(name) or registry.get(name) for name in names}
    selection = TaskSelection(list(dict.fromkeys(names)), include, files=files)
    check_hub_datasets(selection)
    selection.manager = task_manager(include, include_defaults=any(name not in local for name in names))
    return selection


def task_manager(include_paths: list[str], include_defaults: bool = True) -> Any:
    """lm-eval's TaskManager with ``include_paths`` registered (needs the ``eval`` extra)."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise SwiftConfigError("benchmarks need lm-eval: pip install 'kernel_magics[eval]'") from None
    return TaskManager(include_path=include_paths or None, include_defaults=include_defaults)


def benchmark_tasks(contains: str = "") -> list[str]:
    """Names of the lm-eval tasks known here (the registry and the packaged ones), filtered by ``contains``."""
    names = sorted({*PACKAGED_TASKS, *_registry_names()})
    return [name for name in names if contains.lower() in name.lower()]


def _offline() -> bool:
    import huggingface_hub

    try:
        import datasets
    except ImportError:  # pragma: no cover - lm-eval depends on it
        return bool(huggingface_hub.constants.HF_HUB_OFFLINE)
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


def _cached(dataset: str) -> bool:
    import datasets

    return (Path(datasets.config.HF_DATASETS_CACHE) / dataset.replace("/", "___")).is_dir()


def check_hub_datasets(selection: TaskSelection) -> None:
    """Offline, a task whose Hub dataset is not in the local cache fails now, in one line."""
    if not _offline():
        return
    for name in selection.names:
        dataset = selection.dataset_of(name)
        if dataset and dataset not in LOCAL_BUILDERS and not Path(dataset).exists() and not _cached(dataset):
            raise hub_error(name, dataset, "offline and not in the datasets cache")


def hub_error(name: str, dataset: str, reason: str) -> SwiftConfigError:
    return SwiftConfigError(
        f"task '{name}' needs the Hub dataset '{dataset}' ({reason}); copy its YAML, set dataset_path: json "
        f"and dataset_kwargs.data_files to local files, and pass the YAML's path"
    )


def hub_dataset_error(selection: TaskSelection, exc: BaseException) -> SwiftConfigError | None:
    """One line for a task whose Hub dataset could not be loaded (a network or not-found error), else None."""
    text = f"{type(exc).__name__} {exc}".lower()
    if not isinstance(exc, (OSError, ConnectionError)) and not any(word in text for word in _UNREACHABLE):
        return None
    for name in selection.names:
        dataset = selection.dataset_of(name)
        if dataset and dataset not in LOCAL_BUILDERS and not Path(dataset).exists():
            return hub_error(name, dataset, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
    return None
