"""Cards for models already on this machine: the Hugging Face hub cache and folders the user names.

A card is read from the model's ``config.json`` (architecture, context length, vision / audio parts),
its weights' safetensors headers (parameter count from the tensor shapes, without loading weights), the
files present (formats) and the README's front matter (license, languages). Cards are marked
``local=True`` and carry the folder in ``path``. Scans are cached until a folder changes.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import configs
from .catalog import normalize_card

_scan_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}


def safetensors_params(folder: str | os.PathLike[str]) -> int | None:
    """Total parameter count from the headers of ``*.safetensors`` files (None when there are none)."""
    total, found = 0, False
    for file in sorted(Path(folder).glob("*.safetensors")):
        try:
            with file.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > 100_000_000:
                    continue
                header = json.loads(handle.read(length))
        except (OSError, struct.error, ValueError):
            continue
        found = True
        for name, info in header.items():
            if name != "__metadata__" and isinstance(info, dict):
                total += math.prod(info.get("shape", []))
    return total if found else None


def _front_matter(folder: Path) -> dict[str, Any]:
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
    if not match:
        return {}
    try:
        import yaml

        data = yaml.safe_load(match.group(1))
    except Exception:  # noqa: BLE001 - a broken front matter is ignored
        return {}
    return data if isinstance(data, dict) else {}


def card_from_folder(folder: str | os.PathLike[str], repo_id: str | None = None) -> dict[str, Any] | None:
    """A catalog card for a local model folder (None when it has no readable config.json)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    architecture, kind = configs.architecture(config), configs.model_type(config)
    modalities = configs.input_modalities(config)
    tasks = _local_tasks(folder, architecture, kind, modalities)
    files = {p.suffix for p in folder.iterdir() if p.is_file()}
    formats = [f for f, ext in (("safetensors", ".safetensors"), ("gguf", ".gguf")) if ext in files]
    meta = _front_matter(folder)
    languages = meta.get("language") or []
    languages = [languages] if isinstance(languages, str) else [str(x) for x in languages]
    params = safetensors_params(folder)
    params_b = round(params / 1e9, 9) if params else 0.0  # 9 decimals keep the exact count
    active = configs.active_params(config, params or 0)
    name = repo_id or folder.name
    row = {
        "id": name,
        "family": kind,
        "architecture": architecture,
        "params_b": params_b,
        "active_params_b": round(active / 1e9, 9) if active else None,
        "modalities": modalities,
        "tasks": tasks,
        "languages": languages,
        "license": str(meta.get("license") or ""),
        "context_length": configs.context_length(config),
        "formats": formats,
        "release": time.strftime("%Y-%m", time.gmtime((folder / "config.json").stat().st_mtime)),
        "description": f"Local model at {folder}: {architecture or kind}, {params_b:g}B parameters.",
        "aliases": ["local", "本地"],
        "local": True,
        "path": str(folder),
    }
    return normalize_card(row, str(folder / "config.json"))


def _local_tasks(folder: Path, architecture: str, kind: str, modalities: list[str]) -> list[str]:
    """Tasks told by the architecture, and chat or base by whether a chat template ships with it."""
    if "whisper" in kind:
        return ["asr"]
    if architecture.endswith("ForSequenceClassification"):
        return ["rerank"]
    if architecture.endswith("Model") and not architecture.endswith("LMHeadModel"):
        return ["embedding"]
    template = (folder / "chat_template.jinja").is_file() or "chat_template" in _read_json(
        folder / "tokenizer_config.json"
    )
    tasks = ["chat"] if template else ["base"]
    return tasks + (["vqa", "caption"] if "image" in modalities else [])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _snapshot(repo_dir: Path) -> Path | None:
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snap = repo_dir / "snapshots" / ref.read_text().strip()
        if (snap / "config.json").is_file():
            return snap
    snaps = [p for p in (repo_dir / "snapshots").glob("*") if (p / "config.json").is_file()]
    return max(snaps, key=lambda p: p.stat().st_mtime) if snaps else None


def _hub_repos(cache: Path) -> list[Path]:
    try:
        return sorted(p for p in cache.iterdir() if p.name.startswith("models--") and p.is_dir())
    except OSError:
        return []


def _signature(cache: Path | None, dirs: list[Path]) -> tuple[Any, ...]:
    def mtime(path: Path) -> int:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return 0

    parts: list[Any] = []
    if cache is not None:
        parts.append((str(cache), mtime(cache)))
        parts += [(p.name, mtime(p / "snapshots"), mtime(p / "refs")) for p in _hub_repos(cache)]
    parts += [(str(d), mtime(d)) for d in dirs]
    return tuple(parts)


def local_cards(dirs: Iterable[str | os.PathLike[str]] | None = None, hub_cache: bool = True) -> list[dict[str, Any]]:
    """Cards of models in the hub cache (``hub_cache``) and in ``dirs`` (model folders or their parents)."""
    from ..envinfo import hf_cache_dir
    from ..packaged import built_folders

    cache = Path(hf_cache_dir()) if hub_cache else None
    folders = [Path(d).expanduser() for d in (dirs or [])]
    key = (_signature(cache, folders), tuple(str(f) for _, f in built_folders()))
    if key in _scan_cache:
        return _scan_cache[key]
    cards: list[dict[str, Any]] = []
    if cache is not None:
        for repo_dir in _hub_repos(cache):
            snap = _snapshot(repo_dir)
            repo_id = repo_dir.name[len("models--") :].replace("--", "/", 1)
            card = card_from_folder(snap, repo_id) if snap else None
            if card:
                cards.append(card)
    for repo_id, folder in (
        built_folders() if hub_cache else []
    ):  # packaged real models converted into the kernel_magics cache
        card = card_from_folder(folder, repo_id)
        if card:
            cards.append(card)
    for folder in folders:
        candidates = [folder] if (folder / "config.json").is_file() else sorted(p for p in folder.glob("*/"))
        for candidate in candidates:
            card = card_from_folder(candidate)
            if card:
                cards.append(card)
    if len(_scan_cache) > 8:
        _scan_cache.clear()
    _scan_cache[key] = cards
    return cards
