"""LoRA adapter folders: where one is, what it records, and whether a base model fits it.

Training (continuing an SFT adapter), export (merge, evaluate) and serving all read adapters through
these functions, and compare an adapter's base with the model it is applied to on one list of
``config.json`` fields, :data:`BASE_FIELDS`: LoRA matrices of two architectures can have equal shapes (a
Qwen2 adapter loads silently onto a Llama of the same size), so the configs are compared before the
weights load. Each caller words its own error (the flag to fix differs); none of this loads torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SwiftModelError

ADAPTER_CONFIG = "adapter_config.json"
# config.json fields that must agree between the base an adapter was trained on and the one it is applied to
BASE_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a one-line :class:`SwiftModelError`."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SwiftModelError(f"cannot read {path}: {exc}".splitlines()[0]) from None
    return data if isinstance(data, dict) else {}


def is_adapter_folder(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def find_adapter(path: str | Path) -> Path | None:
    """The folder holding ``adapter_config.json``: ``path`` itself, or a run folder's ``adapter/``."""
    folder = Path(path).expanduser()
    for candidate in (folder, folder / "adapter", folder / "final" / "adapter"):
        if is_adapter_folder(candidate):
            return candidate
    return None


def adapter_config(folder: Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``."""
    return read_json(Path(folder) / ADAPTER_CONFIG)


def recorded_base(folder: Path) -> str | None:
    """The ``base_model_name_or_path`` the adapter records (None when it records none)."""
    return adapter_config(folder).get("base_model_name_or_path") or None


def trained_base(folder: Path) -> str | None:
    """The base the adapter was trained on: its run's resolved model folder when the adapter sits in a run
    folder of this machine, else what the adapter records."""
    from .train.runtime.run_config import RunConfig, read_config_file

    recorded = read_config_file(Path(folder).parent)  # the run folder's config.json, when it has one
    model_path = RunConfig.from_dict(recorded).model_path if recorded is not None else ""
    if model_path and Path(str(model_path)).is_dir():
        return str(model_path)
    try:
        return recorded_base(folder)
    except SwiftModelError:
        return None


def locate(name_or_path: str) -> Path | None:
    """The folder of a base model named by path or hub id, if it is on this machine (never downloads)."""
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    try:
        from .hub import resolve_model

        folder = resolve_model(name_or_path, allow_download=False)
    except Exception:  # noqa: BLE001 - not at hand (another machine, not cached): nothing to compare against
        return None
    return folder if (folder / "config.json").is_file() else None


def base_fields(folder: Path) -> dict[str, Any]:
    """The :data:`BASE_FIELDS` of a model folder's ``config.json`` (a VLM's from its ``text_config`` too)."""
    try:
        config = read_json(Path(folder) / "config.json")
    except SwiftModelError:
        return {}
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    merged = {**text, **config}
    return {key: merged[key] for key in BASE_FIELDS if merged.get(key) is not None}


@dataclass(frozen=True)
class BaseMismatch:
    """How an adapter's base differs from the model it is applied to: the first differing field."""

    trained_on: str  # the base as the adapter (or its run) names it
    field: str
    theirs: Any  # the trained-on base's value
    ours: Any  # the given model's value


def base_mismatch(adapter_dir: Path, model_dir: Path) -> BaseMismatch | None:
    """The first :data:`BASE_FIELDS` difference between the adapter's base and ``model_dir``; None when they
    agree, or when that base is not on this machine (peft then checks shapes as the weights load)."""
    trained_on = trained_base(adapter_dir)
    base = locate(trained_on) if trained_on else None
    if base is None or base.resolve() == Path(model_dir).resolve():
        return None
    theirs, ours = base_fields(base), base_fields(Path(model_dir))
    for key in BASE_FIELDS:
        if key in theirs and key in ours and theirs[key] != ours[key]:
            return BaseMismatch(str(trained_on), key, theirs[key], ours[key])
    return None
