"""What a launcher form means, without widgets: its fields from a :class:`~kernel_magics.argspec.Command`,
the keyword arguments its values give, the ``%%swift`` cell that makes the same call, and the plan.

Every field comes from the command's ``Arg`` rows (for a training method: its argument dataclass), so a
knob added to a dataclass shows in the form with its help and default. ``COMMON`` only orders them: the
ones named there (and positionals) come first, the rest go under "more".
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..argspec import Arg, Command, key_value

# shown first when a command has them; every other knob is under "more"
COMMON = (
    "model",
    "dataset",
    "method",
    "loss",
    "reward",
    "max_steps",
    "lr",
    "model_id",
    "adapter",
    "adapters",
    "base",
    "model_dir",
    "format",
    "url",
    "compare",
)
# the knobs that change the training plan (memory estimate, method auto picks)
PLAN_KNOBS = (
    "model",
    "method",
    "device",
    "batch_size",
    "grad_accum",
    "max_length",
    "dtype",
    "lora_r",
    "target_modules",
    "gradient_checkpointing",
    "optim",
    "max_pixels",
    "train_vision",
)


def split_fields(command: Command, promoted: Sequence[str] = ()) -> tuple[list[Arg], list[Arg]]:
    """The command's arguments as (common, more): positionals, ``COMMON`` and ``promoted`` first."""
    wanted = {*COMMON, *promoted}
    common = [a for a in command.args if a.positional or a.name in wanted]
    order = {name: i for i, name in enumerate((*COMMON, *promoted))}
    common.sort(key=lambda a: (not a.positional, order.get(a.name, len(order))))
    return common, [a for a in command.args if a not in common]


def default_text(arg: Arg) -> str:
    """What the form shows for a knob's default: its value, or the words for a run-time default."""
    if arg.default not in (None, "", [], ()):
        return ", ".join(map(str, arg.default)) if isinstance(arg.default, (list, tuple)) else str(arg.default)
    return arg.default_help or ""


def value_from_text(arg: Arg, raw: Any) -> Any:
    """A field's value as the keyword argument (None: left at its default)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if arg.multiple and isinstance(raw, str):
        raw = [line.strip() for line in raw.replace(",", "\n").splitlines() if line.strip()]
    value = arg.convert(raw.strip() if isinstance(raw, str) else raw)
    return None if value == arg.default else value


def kwargs_from(command: Command, raw_values: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the command from the form's raw values (text, choices, booleans)."""
    by_name = {a.name: a for a in command.args}
    out: dict[str, Any] = {}
    for name, raw in raw_values.items():
        value = value_from_text(by_name[name], raw)
        if value is not None:
            out[name] = value
    return out


@dataclass(frozen=True)
class Cell:
    """A ``%swift`` line and an optional ``%%swift`` YAML body."""

    line: str  # after "%swift " / "%%swift "
    body: str  # "" when every value is on the line

    @property
    def text(self) -> str:
        return f"%%swift {self.line}\n{self.body}" if self.body else f"%swift {self.line}"


def cell_for(command: Command, kwargs: Mapping[str, Any], common: Sequence[str] = ()) -> Cell:
    """The cell that calls ``command`` with ``kwargs``: positionals and ``common`` flags on the line, the rest as
    YAML (the names the cell body takes)."""
    import yaml

    by_name = {a.name: a for a in command.args}
    line: list[str] = [command.name]
    body: dict[str, Any] = {}
    for arg in command.args:  # positionals in their order first
        if arg.positional and arg.name in kwargs:
            value = kwargs[arg.name]
            line.append(value if arg.nargs == "*" else shlex.quote(str(value)))
    for name, value in kwargs.items():
        arg = by_name[name]
        if arg.positional:
            continue
        if name in common:
            line += _flag_tokens(arg, value)
        else:
            body[name] = _yaml_value(arg, value)
    text = yaml.safe_dump(body, allow_unicode=True, sort_keys=False, default_flow_style=False) if body else ""
    return Cell(" ".join(line), text)


def _plain(arg: Arg, value: Any) -> Any:
    if arg.type is key_value and isinstance(value, tuple):
        return f"{value[0]}={value[1]}"
    return value


def _flag_tokens(arg: Arg, value: Any) -> list[str]:
    if arg.flag:
        return [arg.flag_name if value else "--no-" + arg.flag_name[2:]]
    values = value if arg.multiple else [value]
    tokens: list[str] = []
    for item in values:
        item = _plain(arg, item)
        text = ",".join(map(str, item)) if isinstance(item, (list, tuple)) else str(item)
        tokens += [arg.flag_name, shlex.quote(text)]
    return tokens


def _yaml_value(arg: Arg, value: Any) -> Any:
    if arg.multiple:
        return [_plain(arg, v) for v in value]
    if isinstance(value, tuple):
        return list(value)
    return value


# -- the plan ----------------------------------------------------------------------------------------------
@dataclass
class PlanView:
    """What the form shows before a run: the plan (method auto-picked and why), peak memory, each method's."""

    plan: Any  # kernel_magics.train.planning.plan.Plan
    totals: dict[str, float]
    device_free_gb: float
    model: str

    @property
    def fits(self) -> bool:
        return self.plan.estimate_gb is None or self.plan.estimate_gb <= self.device_free_gb * 0.95


def plan_for(command: Command, kwargs: Mapping[str, Any]) -> PlanView:
    """``km.estimate`` and the plan ``method="auto"`` (or the chosen method) makes for these arguments on
    this device, as the run will make it (``kernel_magics.train.runtime.launching.plan_run``)."""
    from ..config import settings
    from ..device import select_device
    from ..train.planning.plan import make_plan

    values = {a.name: a.default for a in command.args}
    values.update(command.defaults)
    values.update(kwargs)
    model = values.get("model") or settings.default_model
    dtype = values.get("dtype") or "auto"
    found = _estimate(
        model,
        max_length=int(values.get("max_length") or 1024),
        batch_size=int(values.get("batch_size") or 1),
        lora_r=int(values.get("lora_r") or 8),
        target_modules=values.get("target_modules"),
        gradient_checkpointing=values.get("gradient_checkpointing"),
        device=values.get("device"),
        image_pixels=values.get("max_pixels"),
        train_vision=bool(values.get("train_vision")),
        dtype=None if dtype == "auto" else dtype,
    )
    plan = make_plan(
        str(values.get("method") or "auto"),
        select_device(values.get("device")),
        batch_size=int(values.get("batch_size") or 1),
        grad_accum=int(values.get("grad_accum") or 1),
        gradient_checkpointing=values.get("gradient_checkpointing"),
        estimates=found.totals,
        optim=values.get("optim"),
        dtype=dtype,
    )
    return PlanView(plan, dict(found.totals), found.device_free_gb, str(model))


def _estimate(model: str, **options: Any) -> Any:
    """``km.estimate`` from a config already on this machine: a folder, ``tiny``, a hub id in the local cache,
    or a packaged model (SmolLM2, also by its hub id). The form never fetches anything: a model not at hand
    gets one line saying so."""
    from pathlib import Path

    from ..hub import TINY_ALIASES, resolve_model
    from ..packaged import ALIASES
    from ..train.planning.estimate import estimate

    name = str(model).strip()
    if Path(name).expanduser().exists() or name in TINY_ALIASES or name.lower() in ALIASES:
        return estimate(name, **options)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - not a valid hub id: resolve_model says why in one line
        cached = None
    if isinstance(cached, str):
        return estimate(cached, **options)
    return estimate(str(resolve_model(name, allow_download=False)), **options)
