"""``RunConfig``: what a run folder's ``config.json`` records, as a type, and its one reader and writer.

Every run writes its config once, at its start (:func:`.launching.write_run`); the run's own process, its
ranks, a kernel that attaches later, the dashboard and ``export-script`` read it back with
:meth:`RunConfig.read`. The file carries a ``schema`` number (:data:`SCHEMA`). A file written before it
(schema 1, no key) loads the same way: a field it lacks gets its default, and a key this code does not know
is kept in :attr:`RunConfig.extra` and written back, so nothing of the run is lost.

A run folder is data: ``trust_remote_code`` on reading is this session's setting, never the folder's, and
the trainer that runs is the registered method's (:func:`kernel_magics.train.methods.registry.trainer_of`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import SwiftUsageError
from ..planning.plan import Plan

SCHEMA = 2  # 1: files written before the key existed
CONFIG_FILE = "config.json"
# fields left out of the file while None (a method's own, and what runs written before them lack)
ABSENT_WHEN_NONE = ("command", "run_uid", "loss", "beta", "rewards", "reward_file", "vision")
# what a plan read from a hand-written file lacks ("": not recorded; make_plan always writes every field)
_PLAN_DEFAULTS = {
    "method": "", "dtype": "", "device": "cpu", "batch_size": 1, "grad_accum": 1, "gradient_checkpointing": False,
    "optim": "",
}  # fmt: skip


@dataclass
class RunConfig:
    """One run's record: its identity, method, model, plan, arguments and data (``config.json``).

    ``command`` names the run's method in the registry and ``kind`` its variant (the loss); ``method`` is
    the fine-tuning method asked (lora, qlora, full) and ``plan`` what was decided for the device.
    ``arguments`` is the method's argument dataclass as ``to_config()`` writes it (the run's own process
    rebuilds the dataclass from it). ``loss`` ... ``vision`` are what some methods add and generic code
    reads (the dashboard, export-script, the registry); ``extra`` holds every other key, a method's own or
    one this code does not know, written back as it was.
    """

    run_id: str = ""
    command: str | None = None  # runs written before it name the method by ``kind`` only
    run_uid: str | None = None  # None: a run from before checkpoints recorded their run
    kind: str = "sft"
    trainer: str = ""  # the registry's hook when the run was written (informative: the code's is used)
    created: str = ""
    model: str = ""
    model_path: str = ""
    method: str = ""
    plan: Plan = field(default_factory=lambda: Plan(**_PLAN_DEFAULTS))
    arguments: dict[str, Any] = field(default_factory=dict)
    dataset_copy: str | None = None  # in-memory rows kept as dataset.jsonl (relative: beside config.json)
    data: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = 0  # None: the epochs decide
    max_length: int | None = None
    batch_size: int = 1
    grad_accum: int = 1
    trust_remote_code: bool = False
    device: dict[str, Any] = field(default_factory=dict)
    estimate_gb: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    world_size: int = 1
    strategy: str = "ddp"
    # what some methods record and generic code reads (absent from the file when None)
    loss: str | None = None
    beta: float | None = None
    rewards: list[str] | None = None  # GRPO: the reward functions' names (the dashboard's panels)
    reward_file: str | None = None  # GRPO: the rewards' sources saved in the run folder (export-script)
    vision: dict[str, Any] | None = None  # a vision-language run's knobs (the registry's ``on_images``)
    extra: dict[str, Any] = field(default_factory=dict)

    # -- reading --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """A config from its JSON object, of any schema: missing fields get defaults, unknown keys go to ``extra``."""
        values = {k: v for k, v in data.items() if k != "schema"}
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        fields = {k: values.pop(k) for k in list(values) if k in known}
        fields["plan"] = plan_from(fields.get("plan"), fields)
        for name in ("arguments", "data", "device", "estimate_gb", "versions"):
            if not isinstance(fields.get(name, {}), dict):
                fields[name] = {}
        return cls(**fields, extra=values)

    @classmethod
    def read(cls, folder: Path) -> RunConfig:
        """The config of the run in ``folder``; ``trust_remote_code`` is this session's setting
        (``KERNEL_MAGICS_TRUST_REMOTE_CODE``), never the folder's."""
        from ...config import settings

        config = read_config_file(folder)
        if config is None:
            raise SwiftUsageError(f"{folder} is not a run folder (no readable {CONFIG_FILE})")
        run = cls.from_dict(config)
        run.trust_remote_code = bool(settings.trust_remote_code)
        return run

    # -- writing --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``config.json`` holds: ``schema`` first, then the fields (those of
        :data:`ABSENT_WHEN_NONE` only when set) and the ``extra`` keys."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif f.name == "plan":
                out["plan"] = value.to_dict()
            elif value is not None or f.name not in ABSENT_WHEN_NONE:
                out[f.name] = value
        return out

    def write(self, folder: Path) -> None:
        """Write ``folder/config.json`` atomically."""
        from .records import atomic_write

        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str)
        atomic_write(Path(folder) / CONFIG_FILE, text)

    def __getitem__(self, key: str) -> Any:
        """``run.config["plan"]["method"]``: a value as ``config.json`` holds it (notebooks read a run so)."""
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get`` over what ``config.json`` holds."""
        return self.to_dict().get(key, default)

    def record(self, values: dict[str, Any]) -> None:
        """Add what a method's ``record`` hook returns: a known field is set, any other key goes to ``extra``."""
        known = {f.name for f in dataclasses.fields(self)} - {"extra", "plan"}
        for key, value in values.items():
            if key in known:
                setattr(self, key, value)
            else:
                self.extra[key] = value


def plan_from(value: Any, config: dict[str, Any]) -> Plan:
    """The :class:`Plan` of a recorded plan object (a field it lacks: the run's own value, else a default)."""
    stored = value if isinstance(value, dict) else {}
    names = {f.name for f in dataclasses.fields(Plan)}
    fallback = {**_PLAN_DEFAULTS, **{k: config[k] for k in ("method", "batch_size", "grad_accum") if config.get(k)}}
    return Plan(**{**fallback, **{k: v for k, v in stored.items() if k in names}})


def read_config_file(folder: Path) -> dict[str, Any] | None:
    """``folder/config.json`` as a JSON object; None when absent, unreadable or not an object."""
    try:
        value = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
