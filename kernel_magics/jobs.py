"""Long work in the background: the state machine shared by ``Run`` (training) and ``Server``.

A job moves ``queued -> running -> stopping -> finished | stopped | failed`` and publishes each state
change and each metric row to its subscribers (the dashboard widgets observe jobs this way; the core
never imports a widget). Every live job is registered so ``%swift stop`` can stop them all and kernel shutdown the ones that
live in the kernel's process.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import Any

QUEUED, RUNNING, STOPPING, FINISHED, STOPPED, FAILED = (
    "queued",
    "running",
    "stopping",
    "finished",
    "stopped",
    "failed",
)
TERMINAL = frozenset({FINISHED, STOPPED, FAILED})

Listener = Callable[[str, Any], None]

_live: weakref.WeakSet[Job] = weakref.WeakSet()
_live_lock = threading.Lock()


class Job:
    """Base class of background jobs. Subclasses start work and call :meth:`set_state` / :meth:`emit`."""

    kind = "job"
    ends_with_process = True  # False: the work goes on in a process of its own when this one exits

    def __init__(self, name: str) -> None:
        self.name = name
        self._state = QUEUED
        self.error: str | None = None
        self._done = threading.Event()
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        with _live_lock:
            _live.add(self)

    # -- state ---------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """queued, running, stopping, finished, stopped or failed (see :attr:`error` for why)."""
        return self._state

    @property
    def done(self) -> bool:
        return self._state in TERMINAL

    def set_state(self, state: str, error: str | None = None) -> None:
        with self._lock:
            if self._state in TERMINAL:
                return
            self._state = state
            if error is not None:
                self.error = error
            if state in TERMINAL:
                self._done.set()
        self.emit("status", state)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends (or ``timeout`` seconds pass); return the status."""
        self._done.wait(timeout)
        return self._state

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- events --------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, payload)`` on each event; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: str, payload: Any = None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event, payload)
            except Exception:  # noqa: BLE001 - a broken display must never break the job
                pass

    def __repr__(self) -> str:
        extra = f": {self.error}" if self.error else ""
        return f"<{type(self).__name__} {self.name!r} {self._state}{extra}>"


def register_live(job: Job) -> None:
    """Count ``job`` among the live jobs again (a run resumed or attached to): ``%swift stop``, Ctrl-C and
    kernel shutdown see it. A new job is registered when it is made."""
    with _live_lock:
        _live.add(job)


def unregister_live(job: Job) -> None:
    """Leave ``job`` out of the live jobs (a run loaded from its folder, or written but not started yet)."""
    with _live_lock:
        _live.discard(job)


def live_jobs(kind: str | None = None) -> list[Job]:
    """Jobs that have not ended, optionally only of one ``kind`` ("run", "server")."""
    with _live_lock:
        jobs = list(_live)
    return [j for j in jobs if not j.done and (kind is None or j.kind == kind)]


def stop_all(kind: str | None = None, timeout: float = 30.0) -> list[Job]:
    """Stop every live job (of ``kind``), waiting up to ``timeout`` seconds for each."""
    return _stop_and_wait(live_jobs(kind), timeout)


def _stop_and_wait(jobs: list[Job], timeout: float) -> list[Job]:
    for job in jobs:
        try:
            job.stop()
        except Exception:  # noqa: BLE001
            pass
    for job in jobs:
        job.wait(timeout)
    return jobs


def stop_at_exit(timeout: float = 10.0) -> None:
    """At interpreter exit: stop the jobs that would end with this process anyway (servers, in-process runs);
    runs in processes of their own go on, and a later kernel can attach to them."""
    _stop_and_wait([job for job in live_jobs() if job.ends_with_process], timeout)


atexit.register(stop_at_exit)
