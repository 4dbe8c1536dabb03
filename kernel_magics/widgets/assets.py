"""Browser-side assets of the panels (anywidget ESM and CSS kept in the repository's ``nbext/``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def _asset_dirs() -> list[Path]:
    # installed wheel: kernel_magics/nbext; editable checkout: <repo>/nbext
    return [_PACKAGE / "nbext", _PACKAGE.parent / "nbext"]


@cache
def asset(name: str) -> str:
    """Text of ``nbext/<name>`` (e.g. ``"chat.js"``)."""
    for folder in _asset_dirs():
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"kernel_magics asset {name!r} not found in {[str(d) for d in _asset_dirs()]}")
