"""Settings shared by the notebook magic, the CLI and the Python API.

The core never imports IPython: it reads this plain object. In a notebook the ``SwiftMagics``
traitlets (``%config SwiftMagics.default_model = "..."``) write through to it; on a terminal the same
defaults come from environment variables named ``KERNEL_MAGICS_<NAME>`` (e.g.
``KERNEL_MAGICS_WORKSPACE=/data/runs``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import SwiftConfigError

ENV_PREFIX = "KERNEL_MAGICS_"


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "kernel_magics")


@dataclass
class Settings:
    """Project-wide defaults. Each field is also a ``SwiftMagics`` trait and an environment variable."""

    cache_dir: str = ""
    workspace: str = "km-workspace"
    default_model: str = "tiny"
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str = ""
    verbose_errors: bool = False
    trust_remote_code: bool = False

    HELP = {
        "cache_dir": "Where kernel_magics keeps built tiny models, search indexes and downloads.",
        "workspace": "Folder that holds runs/<run-id>/ of every training run.",
        "default_model": "Model used when a command gets no --model ('tiny' is the embedded tiny model).",
        "device": "auto | cpu | cuda | cuda:N | mps: where training and serving run.",
        "host": "Address servers bind to (127.0.0.1 unless you ask otherwise).",
        "port": "First port tried for servers; the next free one is taken when busy.",
        "api_key": "API key servers require on every request (empty: none, loopback only).",
        "verbose_errors": "Show full tracebacks instead of one line.",
        "trust_remote_code": "Allow models whose code lives in their repository (off by default).",
    }

    def __post_init__(self) -> None:
        if not self.cache_dir:
            self.cache_dir = _default_cache_dir()
        for f in fields(self):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                setattr(self, f.name, _coerce(f.name, raw, type(getattr(self, f.name))))

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser()

    @property
    def workspace_path(self) -> Path:
        return Path(self.workspace).expanduser()

    def update(self, **values: object) -> None:
        """Set several settings, checking names and types."""
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                from .errors import did_you_mean

                raise SwiftConfigError(f"unknown setting '{key}'{did_you_mean(key, names)}")
            setattr(self, key, _coerce(key, value, type(getattr(self, key))))


def _coerce(name: str, value: object, kind: type) -> object:
    if isinstance(value, kind):
        return value
    try:
        if kind is bool:
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(text)
        return kind(value)
    except (TypeError, ValueError):
        raise SwiftConfigError(f"setting '{name}' must be {kind.__name__}, got {value!r}") from None


settings = Settings()
"""The process-wide settings object (the magic's traitlets write into it)."""
