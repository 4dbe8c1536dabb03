"""Ask the classroom service for a training slot and hold it: the client API a training run calls.

::

    from kernel_magics.classroom.slot_client import request_slot

    slot = request_slot("sft poems")      # queued or granted at once; a thread sends heartbeats
    print(slot.message)                   # "queued: 3rd in line, about 6 min"
    slot.wait(timeout=None)               # blocks until granted (False on timeout or when the lease ended)
    slot.report(step=12, s_per_step=0.8)  # figures the teacher's view shows, sent with the next heartbeat
    if slot.revoked.is_set(): ...         # time limit reached or a teacher stopped it: checkpoint and stop
    slot.release()                        # or use ``with request_slot(...) as slot:``

A run that dies stops sending heartbeats; the service frees its slot after the teacher's heartbeat timeout.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..errors import SwiftServeError
from .client import call, service

ENDED = ("released", "expired", "revoked")


class SlotLease:
    """A place in the class's training queue, kept alive by a heartbeat thread until released."""

    def __init__(self, base: str, token: str, answer: dict[str, Any], heartbeat_s: float) -> None:
        self.base, self.token, self.heartbeat_s = base, token, heartbeat_s
        self.lease_id: str = answer["lease_id"]
        self.answer = answer
        self.granted = threading.Event()
        self.revoked = threading.Event()  # the slot was taken back (time limit, teacher): stop with a checkpoint
        self.ended = threading.Event()
        self.error: str | None = None
        self._figures: dict[str, Any] = {}
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._note(answer)
        self._thread = threading.Thread(target=self._beat, name=f"km-slot-{self.lease_id[:8]}", daemon=True)
        self._thread.start()

    @property
    def state(self) -> str:
        return str(self.answer.get("state"))

    @property
    def position(self) -> int | None:
        return self.answer.get("position")

    @property
    def message(self) -> str:
        return str(self.answer.get("message", self.state))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the slot is granted; False when ``timeout`` passed or the lease ended first."""
        with self._changed:
            self._changed.wait_for(lambda: self.granted.is_set() or self.ended.is_set(), timeout)
        return self.granted.is_set() and not self.ended.is_set()

    def report(self, **figures: Any) -> None:
        """Figures of the run (step, s/step, ...) sent with the next heartbeat."""
        self._figures = {k: v for k, v in figures.items() if isinstance(v, (int, float, str))}

    def beat(self) -> dict[str, Any]:
        """Send one heartbeat now; the service's answer."""
        body = json.dumps({"figures": self._figures}).encode()
        answer = call("POST", f"{self.base}/classroom/slots/{self.lease_id}/heartbeat", self.token, body)
        self._note(answer)
        return answer

    def release(self) -> None:
        """Give the slot (or the place in line) back; the next run in line gets it."""
        self._stop.set()
        if not self.ended.is_set():
            try:
                self._note(call("DELETE", f"{self.base}/classroom/slots/{self.lease_id}", self.token))
            except SwiftServeError as exc:
                self.error = str(exc)
        self.ended.set()
        with self._changed:
            self._changed.notify_all()

    def _note(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        if answer.get("state") == "granted":
            self.granted.set()
        if answer.get("state") in ENDED:
            if answer.get("state") == "revoked":
                self.revoked.set()
            self.ended.set()
        with self._changed:
            self._changed.notify_all()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s) and not self.ended.is_set():
            try:
                self.beat()
            except SwiftServeError as exc:  # the service is away for a moment: keep trying until it ends us
                self.error = str(exc)

    def __enter__(self) -> SlotLease:
        self.wait()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<SlotLease {self.lease_id[:8]} {self.message}>"


def request_slot(label: str = "", url: str | None = None, token: str | None = None, heartbeat_s: float = 10.0) -> SlotLease:
    """Join the class's training queue (``label``: what the teacher's view shows, e.g. the run's name)."""
    base, key = service(url, token)
    answer = call("POST", f"{base}/classroom/slots", key, json.dumps({"label": label}).encode())
    return SlotLease(base, key, answer, heartbeat_s)
