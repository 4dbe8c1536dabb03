"""Settings shared by the notebook magic, the CLI and the Python API.

The core never imports IPython: it reads this plain object. In a notebook the ``SwiftMagics``
traitlets (``%config SwiftMagics.default_model = "..."``) write through to it; on a terminal the same
defaults come from environment variables named ``KERNEL_MAGICS_<NAME>`` (e.g.
``KERNEL_MAGICS_WORKSPACE=/data/runs``). ``port``, ``host`` and ``device`` are checked here, once, for
all three (:func:`check_port`, :func:`check_host`, :func:`check_device`) and for the API's arguments.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
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
    device_lease: str = "auto"
    stall_seconds: int = 600

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
        "device_lease": "auto | on | off: one training run at a time per device (auto: on GPUs, off on the CPU).",
        "stall_seconds": "A run whose process sends no heartbeat for this long is reported and ended.",
    }

    def __post_init__(self) -> None:
        if not self.cache_dir:
            self.cache_dir = _default_cache_dir()
        for f in fields(self):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                setattr(self, f.name, _coerce(f.name, raw, type(getattr(self, f.name))))
            except SwiftConfigError as exc:  # a bad variable must not break `import kernel_magics`
                warnings.warn(f"{ENV_PREFIX}{f.name.upper()} ignored: {exc}", stacklevel=2)

    def __setattr__(self, name: str, value: object) -> None:
        check = CHECKS.get(name)
        super().__setattr__(name, check(value) if check is not None else value)

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


def check_port(port: object) -> int:
    """A TCP port number (1..65535), or a one-line :class:`SwiftConfigError`."""
    try:
        number = int(str(port).strip())
    except ValueError:
        number = 0
    if isinstance(port, bool) or not 0 < number < 65536:
        raise SwiftConfigError(f"port must be a number between 1 and 65535, got {port!r}; fix --port or the setting")
    return number


def check_host(host: object) -> str:
    """An address to bind (a name or an IP, no spaces), or a one-line :class:`SwiftConfigError`."""
    text = str(host).strip()
    if not text or any(c.isspace() for c in text) or "/" in text:
        raise SwiftConfigError(f"host must be an address such as 127.0.0.1 or 0.0.0.0, got {host!r}; fix --host")
    return text


DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def check_device(device: object) -> str:
    """A device name (auto, cpu, cuda, cuda:N, mps), lower-cased, or a one-line :class:`SwiftConfigError`."""
    value = str(device).strip().lower()
    index = value.partition(":")[2]
    if value not in ("auto", "cpu", "mps", "cuda") and not (value.startswith("cuda:") and index.isdigit()):
        raise SwiftConfigError(f"device must be {', '.join(DEVICE_NAMES)}, got {device!r}; fix --device")
    return value


def check_lease_mode(mode: object) -> str:
    """``device_lease``: auto, on or off."""
    text = str(mode).strip().lower()
    if text not in ("auto", "on", "off"):
        raise SwiftConfigError(f"device_lease must be auto, on or off, got {str(mode)[:40]!r}")
    return text


def check_stall_seconds(value: object) -> int:
    """``stall_seconds``: a whole number of seconds, at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SwiftConfigError(f"stall_seconds must be a whole number of seconds >= 1, got {str(value)[:40]!r}")
    return value


CHECKS: dict[str, Callable[[object], object]] = {
    "port": check_port,
    "host": check_host,
    "device": check_device,
    "device_lease": check_lease_mode,
    "stall_seconds": check_stall_seconds,
}


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
