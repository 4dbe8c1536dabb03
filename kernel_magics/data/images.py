"""Images of vision-language rows: resolving a path, URL, ``data:`` URL, bytes or PIL image to a checked
file, and opening it. Images that do not come as files are stored once (by content hash) in the
kernel_magics cache, so a run folder can be replayed and resumed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

from .formats import RowError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
URL_TIMEOUT_S = 20.0
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)


def image_cache_dir() -> Path:
    from ..config import settings

    return settings.cache_path / "images"


def _store_bytes(data: bytes, suffix: str = ".png") -> Path:
    """Write ``data`` once under the cache (content-addressed, atomic) and return its path."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    folder = image_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{suffix}"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def _store_pil(image: Any) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _store_bytes(buffer.getvalue(), ".png")


def _fetch_url(url: str) -> Path:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RowError("", f"cannot download {url} ({reason})") from None
    suffix = Path(url.split("?")[0]).suffix.lower()
    return _store_bytes(data, suffix if suffix in IMAGE_SUFFIXES else ".img")


def resolve_image(value: Any, base: Path | None, field: str) -> Path:
    """A local file for an image reference: path (absolute, or relative to the dataset's folder), http(s)
    URL, ``data:`` URL, ``file://`` URL, bytes, ``{"bytes"|"path"}`` dict (``datasets.Image``) or PIL image.

    Raises :class:`RowError` naming ``field`` when the reference is missing, unknown or unreadable.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(field, "is missing; give a path, URL or PIL image")
    if hasattr(value, "save") and hasattr(value, "size") and hasattr(value, "mode"):  # PIL.Image
        return _check_readable(_store_pil(value), field, value)
    if isinstance(value, (bytes, bytearray)):
        return _check_readable(_store_bytes(bytes(value)), field, "<bytes>")
    if isinstance(value, dict):
        if value.get("bytes"):
            return _check_readable(_store_bytes(bytes(value["bytes"])), field, "<bytes>")
        if value.get("path"):
            return resolve_image(value["path"], base, field)
        if value.get("url"):
            return resolve_image(value["url"], base, field)
        raise RowError(field, f"is a dict without 'path', 'url' or 'bytes' (keys: {', '.join(map(str, value))})")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise RowError(field, f"must be a path, URL or PIL image, got {type(value).__name__}")
    text = value.strip()
    if _DATA_URL.match(text):
        try:
            data = base64.b64decode(text.split(",", 1)[1], validate=False)
        except (binascii.Error, ValueError):
            raise RowError(field, "is a data: URL whose base64 payload does not decode") from None
        return _check_readable(_store_bytes(data), field, "data: URL")
    if text.startswith(("http://", "https://")):
        try:
            return _check_readable(_fetch_url(text), field, text)
        except RowError as exc:
            raise RowError(field, exc.problem) from None
    if text.startswith("file://"):
        text = text[len("file://") :]
    path = Path(text).expanduser()
    candidates = [path] if path.is_absolute() else [*([base / path] if base else []), Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return _check_readable(candidate.resolve(), field, text)
    looked = candidates[0]
    raise RowError(field, f"image '{text}' does not exist (looked for {looked}); fix the path")


def _check_readable(path: Path, field: str, shown: Any) -> Path:
    """Open the image header (cheap) so unreadable files fail here, not in the middle of training."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise RowError(
            field, f"image '{shown}' cannot be read as an image ({type(exc).__name__}); replace it"
        ) from None
    if width < 1 or height < 1:
        raise RowError(field, f"image '{shown}' is empty ({width}x{height})")
    return path


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, reading only its header."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def load_image(path: str | Path) -> Any:
    """An RGB ``PIL.Image`` (fully loaded, file closed)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


# -- formats -----------------------------------------------------------------------------------------
