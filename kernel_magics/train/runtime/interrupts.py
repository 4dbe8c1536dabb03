"""Ctrl-C and the kernel's ■ button stop live runs with a checkpoint, then behave as before."""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ...jobs import QUEUED, RUNNING, live_jobs

SHUTDOWN_GRACE_S = 1.0  # Jupyter interrupts a kernel just before it restarts or shuts it down
_exiting = threading.Event()
atexit.register(_exiting.set)


def kernel_shutting_down() -> bool:
    """Is this process on its way out (a Jupyter kernel asked to shut down or restart, or the interpreter)?"""
    if _exiting.is_set():
        return True
    kernel_class = getattr(sys.modules.get("ipykernel.kernelbase"), "Kernel", None)
    try:
        return bool(kernel_class and kernel_class.initialized() and kernel_class.instance()._shutdown_message)
    except Exception:  # noqa: BLE001 - an unknown kernel layout: not shutting down as far as we can tell
        return False


def stop_unless_shutting_down(runs: list[Any]) -> None:
    """Stop ``runs``: at once those that end with this process anyway; the ones training in their own
    processes after :data:`SHUTDOWN_GRACE_S`, unless the kernel is shutting down by then (a restart must not
    stop a run that outlives it)."""
    outliving = [run for run in runs if not run.ends_with_process]
    for run in runs:
        if run.ends_with_process:
            run.stop()
    if not outliving:
        return

    def later() -> None:
        if _exiting.wait(SHUTDOWN_GRACE_S) or kernel_shutting_down():
            return
        for run in outliving:
            run.stop()

    threading.Thread(target=later, name="km-interrupt", daemon=True).start()


def chained_sigint_handler(previous: Any) -> Callable[[int, Any], None]:
    """A SIGINT handler that stops live runs (with a checkpoint) and otherwise behaves like ``previous``."""

    def handler(signum: int, frame: Any) -> None:
        runs = [j for j in live_jobs("run") if j.status in (QUEUED, RUNNING)]
        if runs:
            stop_unless_shutting_down(runs)
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
