"""Ctrl-C and the kernel's ■ button stop live runs with a checkpoint, then behave as before."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..jobs import QUEUED, RUNNING, live_jobs


def chained_sigint_handler(previous: Any) -> Callable[[int, Any], None]:
    """A SIGINT handler that stops live runs (with a checkpoint) and otherwise behaves like ``previous``."""

    def handler(signum: int, frame: Any) -> None:
        runs = [j for j in live_jobs("run") if j.status in (QUEUED, RUNNING)]
        if runs:
            for run in runs:
                run.stop()
            print(f"stopping {', '.join(r.name for r in runs)} at the next step (a checkpoint is written)", flush=True)
            return
        if callable(previous):
            previous(signum, frame)
        elif previous in (None, signal.SIG_DFL):
            raise KeyboardInterrupt

    handler.km_chained = True  # type: ignore[attr-defined]
    return handler


def chain_sigint() -> None:
    """From the main thread: make SIGINT stop live runs first, then behave as before."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGINT)
        if not getattr(current, "km_chained", False):
            signal.signal(signal.SIGINT, chained_sigint_handler(current))
    except (ValueError, OSError):  # not the main interpreter thread / unsupported platform
        pass
    _chain_idle_kernel()


def _chain_idle_kernel() -> None:
    """In a Jupyter kernel, also chain the handler the kernel restores between cells (it ignores SIGINT
    when idle), so the ■ button stops a run even when no cell is waiting. Looked up, never imported."""
    module = sys.modules.get("ipykernel.kernelbase")
    kernel_class = getattr(module, "Kernel", None)
    try:
        if kernel_class is None or not kernel_class.initialized():
            return
        kernel = kernel_class.instance()
        saved = getattr(kernel, "saved_sigint_handler", None)
        if saved is not None and not getattr(saved, "km_chained", False):
            kernel.saved_sigint_handler = chained_sigint_handler(saved)
    except Exception:  # noqa: BLE001 - an unknown kernel layout only loses the idle-interrupt convenience
        pass
