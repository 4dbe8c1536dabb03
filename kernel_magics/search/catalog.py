"""The model catalog: one JSON card per line in ``catalog.jsonl`` (shipped with the package).

Every card has the columns in :data:`COLUMNS`. ``load_catalog()`` reads the packaged file, or the file
named by ``KERNEL_MAGICS_CATALOG`` / the ``path`` argument (tests and users can point it elsewhere), and
checks each row; a bad row fails with one line naming the file, the line and the field.

``km.refresh_catalog()`` writes cards pulled from the Hub to ``hub_catalog_path()`` (in the kernel_magics
cache); ``catalog_cards()`` joins them to the packaged catalog, whose hand-checked card wins for a model
in both.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from ..config import settings
from ..errors import SwiftDataError

CATALOG_FILE = Path(__file__).with_name("catalog.jsonl")
COLUMNS = (
    "id",
    "family",
    "architecture",
    "params_b",
    "active_params_b",
    "modalities",
    "tasks",
    "languages",
    "license",
    "context_length",
    "formats",
    "release",
    "description",
    "aliases",
)
REQUIRED = ("id", "params_b", "modalities", "tasks")
LIST_COLUMNS = ("modalities", "tasks", "languages", "formats", "aliases")
MODALITIES = ("text", "image", "video", "audio")
TASKS = (
    "chat",
    "base",
    "code",
    "math",
    "reasoning",
    "vqa",
    "ocr",
    "caption",
    "grounding",
    "embedding",
    "rerank",
    "asr",
    "tts",
    "translation",
    "function-calling",
)
FORMATS = ("safetensors", "gguf", "awq", "gptq", "bnb-4bit", "mlx")

HUB_CATALOG_NAME = "hub-catalog.jsonl"

_cache: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
_joined: dict[tuple[int, int], tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]] = {}


def catalog_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The catalog file in use: ``path``, else ``$KERNEL_MAGICS_CATALOG``, else the packaged one."""
    chosen = path or os.environ.get("KERNEL_MAGICS_CATALOG") or CATALOG_FILE
    return Path(chosen).expanduser()


def load_catalog(path: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Read and check the catalog cards (cached until the file changes). Each card gets ``local=False``."""
    file = catalog_path(path)
    try:
        stat = file.stat()
    except OSError:
        raise SwiftDataError(f"model catalog {file} not found; pass an existing .jsonl file") from None
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    cards: list[dict[str, Any]] = []
    seen: set[str] = set()
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SwiftDataError(f"{file}:{number}: not valid JSON ({exc.msg}); fix or remove the line") from None
            card = normalize_card(row, f"{file}:{number}")
            if card["id"] in seen:
                raise SwiftDataError(f"{file}:{number}: duplicate card id '{card['id']}'; keep one of them")
            seen.add(card["id"])
            cards.append(card)
    if not cards:
        raise SwiftDataError(f"model catalog {file} has no cards")
    for old in [k for k in _cache if k[0] == key[0]] + list(_cache)[: max(0, len(_cache) - 3)]:
        _cache.pop(old, None)  # the file's previous versions, and the oldest beyond four files
    _cache[key] = cards
    return cards


def hub_catalog_path() -> Path:
    """Where ``km.refresh_catalog()`` writes the cards it pulled from the Hub."""
    return settings.cache_path / "search" / HUB_CATALOG_NAME


def uses_packaged_catalog(path: str | os.PathLike[str] | None = None) -> bool:
    return catalog_path(path).resolve() == CATALOG_FILE.resolve()


def catalog_cards(path: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The catalog in use; the packaged one is joined by the Hub cards of the last refresh, if any.

    The joined list is the same object while neither file changes, so indexes built on it stay warm.
    """
    base = load_catalog(path)
    hub_file = hub_catalog_path()
    if not uses_packaged_catalog(path) or not hub_file.is_file():
        return base
    try:
        hub = load_catalog(hub_file)
    except SwiftDataError as exc:
        warnings.warn(f"{exc}; searching the packaged catalog only (run km.refresh_catalog() again)", stacklevel=2)
        return base
    entry = _joined.get((id(base), id(hub)))
    if entry is None or entry[0] is not base or entry[1] is not hub:
        known = {card["id"] for card in base}
        entry = (base, hub, base + [card for card in hub if card["id"] not in known])
        _joined.clear()
        _joined[(id(base), id(hub))] = entry
    return entry[2]


def normalize_card(row: Any, where: str) -> dict[str, Any]:
    """Check one card and fill optional columns with empty values."""
    if not isinstance(row, dict):
        raise SwiftDataError(f"{where}: a card must be a JSON object")
    for name in REQUIRED:
        if row.get(name) in (None, ""):
            raise SwiftDataError(f"{where}: card has no '{name}'")
    card: dict[str, Any] = {}
    for name in COLUMNS:
        value = row.get(name)
        if name in LIST_COLUMNS:
            if value is None:
                value = []
            if not isinstance(value, list):
                raise SwiftDataError(f"{where}: '{name}' must be a list, got {type(value).__name__}")
            value = [str(v) for v in value]
        elif name in ("params_b", "active_params_b"):
            if value is not None:
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise SwiftDataError(f"{where}: '{name}' must be a number, got {value!r}") from None
        elif name == "context_length":
            try:
                value = int(value or 0)
            except (TypeError, ValueError):
                raise SwiftDataError(f"{where}: 'context_length' must be an integer, got {value!r}") from None
        else:
            value = "" if value is None else str(value)
        card[name] = value
    bad = [m for m in card["modalities"] if m not in MODALITIES]
    if bad:
        raise SwiftDataError(f"{where}: unknown modality '{bad[0]}' (use {', '.join(MODALITIES)})")
    card["license"] = card["license"].lower()
    card["local"] = bool(row.get("local", False))
    card["path"] = str(row.get("path") or "")
    return card
