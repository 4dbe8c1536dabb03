"""Progress bars of the Hugging Face libraries, off while a ``%%swift`` cell works.

``transformers`` ("Writing model shards", "Loading weights"), ``huggingface_hub`` and ``datasets`` ("Map") draw
tqdm bars on stderr; in a notebook they land in the cell's output above the dashboard, which already shows the
run's progress. :func:`quiet_progress_bars` turns them off for a cell, and a training run that the cell starts
keeps them off until it ends; then each library's bars are restored as they were.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_lock = threading.Lock()
_holders = 0
_restore: list[Callable[[], None]] = []


def _switches() -> Iterator[tuple[Callable[[], bool], Callable[[], None], Callable[[], None]]]:
    """(is on, turn off, turn on) for each of the libraries that is installed (transformers and datasets are
    extras)."""
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        yield hf_logging.is_progress_bar_enabled, hf_logging.disable_progress_bar, hf_logging.enable_progress_bar
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    yield (lambda: not are_progress_bars_disabled()), disable_progress_bars, enable_progress_bars
    with contextlib.suppress(ImportError):
        import datasets

        yield datasets.is_progress_bar_enabled, datasets.disable_progress_bars, datasets.enable_progress_bars


def _switch_off() -> list[Callable[[], None]]:
    """Turn every library's bars off; the calls that turn back on those that were on."""
    restore = []
    for is_on, turn_off, turn_on in _switches():
        if is_on():
            turn_off()
            restore.append(turn_on)
    return restore


def hold() -> Callable[[], None]:
    """Bars off until the returned release is called (once; later calls do nothing); holds nest."""
    global _holders, _restore
    with _lock:
        if _holders == 0:
            _restore = _switch_off()
        _holders += 1
    released = threading.Event()

    def release() -> None:
        global _holders, _restore
        with _lock:
            if released.is_set():
                return
            released.set()
            _holders -= 1
            if _holders == 0:
                for undo in _restore:
                    undo()
                _restore = []

    return release


def hold_until_done(job: Any) -> None:
    """Keep the bars off until a training run (a job of kind "run") ends: its checkpoints save while it runs."""
    if getattr(job, "kind", None) != "run" or job.done:
        return
    release = hold()

    def on_event(event: str, payload: Any) -> None:
        if event == "status" and job.done:
            release()

    job.subscribe(on_event)
    if job.done:  # ended before the listener was in place
        release()


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[Callable[[Any], None]]:
    """Bars off inside the block; it gets :func:`hold_until_done`, for a run started there."""
    release = hold()
    try:
        yield hold_until_done
    finally:
        release()
