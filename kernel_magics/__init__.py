"""kernel_magics: fine-tune, serve and chat with LLMs from inside the Jupyter kernel.

In a notebook::

    %load_ext kernel_magics
    %swift env
    %swift --help

From Python::

    import kernel_magics as km
    km.env()

This module stays light: ``%load_ext kernel_magics`` imports no torch, transformers or vllm. The
public functions below are imported on first use.
"""

from __future__ import annotations

import logging
from typing import Any

from .config import settings
from .errors import SwiftError
from .train.methods.registry import public_functions


class _OptionalKernelsNotice(logging.Filter):
    """bitsandbytes warns on import that the optional ``kernels`` package (a faster CPU 4-bit matmul) is
    missing; 4-bit works without it, so the red line it puts under every cell that loads peft is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_OptionalKernelsNotice())

__version__ = "0.1.0"

# public name -> "module:attribute", imported on first access; the training methods (km.sft, km.dpo, ...)
# come from their registry, kernel_magics.train.methods.registry
_LAZY = {
    "env": "kernel_magics.envinfo:env",
    "resolve_model": "kernel_magics.hub:resolve_model",
    "download": "kernel_magics.hub:download",
    "search": "kernel_magics.search.api:search",
    "catalog": "kernel_magics.search.sources:catalog",
    "refresh_catalog": "kernel_magics.search.refresh:refresh_catalog",
    "estimate": "kernel_magics.train.planning.estimate:estimate",
    "runs": "kernel_magics.train.api:runs",
    "attach": "kernel_magics.train.api:attach",
    "serve": "kernel_magics.serve.api:serve",
    "merge": "kernel_magics.export.merge:merge",
    "export": "kernel_magics.export.api:export",
    "evaluate": "kernel_magics.export.evaluate:evaluate",
    "compare": "kernel_magics.export.evaluate:compare",
    "compare_benchmarks": "kernel_magics.bench.api:compare_benchmarks",
    "benchmark_tasks": "kernel_magics.bench.registry:benchmark_tasks",
    "launcher": "kernel_magics.widgets.launcher:launcher",
    "publish": "kernel_magics.classroom.client:publish",
    "unpublish": "kernel_magics.classroom.client:unpublish",
    "request_slot": "kernel_magics.classroom.slot_client:request_slot",
    "teacher": "kernel_magics.classroom.teacher:teacher",
    "practice_classroom": "kernel_magics.classroom.practice:practice_classroom",
}

_LAZY.update(public_functions())

__all__ = ["SwiftError", "__version__", "settings", "load_ipython_extension", "unload_ipython_extension", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'kernel_magics' has no attribute '{name}'")
    from .argspec import load

    try:
        value = load(target)
    except (ImportError, AttributeError) as exc:
        raise AttributeError(f"kernel_magics.{name} is not available: {exc}") from exc
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kernel_magics``: register ``%swift`` / ``%%swift`` and the ``SwiftMagics`` config."""
    from .magics import SwiftMagics
    from .train.runtime.warm import prestart

    ipython.register_magics(SwiftMagics)
    prestart()  # a worker process imports the training stack now, so the first run starts warm


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext kernel_magics``: stop servers started from this kernel and remove the magics."""
    from .magics import unregister

    unregister(ipython)
