"""The training-slot queue: runs take turns on the class's GPUs, first come first served.

A run asks for a slot (:meth:`SlotQueue.acquire`) and gets a lease id; it sends a heartbeat every few
seconds while it waits and while it trains, and releases the slot when it ends. The teacher sets how many
slots there are (per GPU) and how long a run may hold one. A lease whose holder stops sending heartbeats
(its kernel died, the student left) is dropped, and one held past the time limit is revoked: the run sees
``revoked`` in its next heartbeat's answer and stops with a checkpoint. Every answer says where the lease
stands: ``granted``, or ``queued`` with its place in line and a rough wait.

No thread: the queue is brought up to date on every call, from the clock it is given.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SwiftConfigError

GRANTED, QUEUED, RELEASED, EXPIRED, REVOKED = "granted", "queued", "released", "expired", "revoked"
ENDED = (RELEASED, EXPIRED, REVOKED)


class UnknownLease(SwiftConfigError):
    """A lease id this queue never gave, or one of another user."""


@dataclass
class Lease:
    """One run's place: waiting in line, holding a slot, or ended (and why)."""

    lease_id: str
    user: str
    label: str
    asked_at: float
    last_heartbeat: float
    state: str = QUEUED
    granted_at: float | None = None
    ended_at: float | None = None
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)  # what the run reports (step, s/step)


class SlotQueue:
    """``slots`` training slots handed out in arrival order, with heartbeats and a time limit."""

    def __init__(self, slots: int, time_limit_s: float, heartbeat_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.slots = slots
        self.time_limit_s = time_limit_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.clock = clock
        self.line: deque[Lease] = deque()
        self.holders: list[Lease] = []
        self.ended: deque[Lease] = deque(maxlen=100)
        self.leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    # -- calls ---------------------------------------------------------------------------------------
    def acquire(self, user: str, label: str = "") -> dict[str, Any]:
        """A new lease for ``user``'s run, granted at once when a slot is free, else queued."""
        with self._lock:
            now = self.clock()
            self._tick(now)
            lease = Lease(secrets.token_urlsafe(12), user, label[:120], now, now)
            self.leases[lease.lease_id] = lease
            self.line.append(lease)
            self._grant(now)
            return self._answer(lease, now)

    def heartbeat(self, lease_id: str, user: str, figures: dict[str, Any] | None = None) -> dict[str, Any]:
        """The holder is alive: where its lease stands now (``revoked`` / ``expired`` end it)."""
        with self._lock:
            now = self.clock()
            lease = self._own(lease_id, user)
            self._tick(now)  # first: a heartbeat after the timeout does not revive a dropped lease
            if lease.state not in ENDED:
                lease.last_heartbeat = now
                lease.figures = dict(figures or {})
            return self._answer(lease, now)

    def release(self, lease_id: str, user: str, teacher: bool = False) -> dict[str, Any]:
        """End the lease (its owner, or a teacher stopping a run); the next in line gets the slot."""
        with self._lock:
            now = self.clock()
            lease = self._own(lease_id, user, teacher)
            if lease.state not in ENDED:
                self._end(lease, now, RELEASED, "released" if lease.user == user else f"stopped by {user}")
            self._tick(now)
            return self._answer(lease, now)

    def status(self) -> dict[str, Any]:
        """The queue and the holders, for the teacher's view."""
        with self._lock:
            now = self.clock()
            self._tick(now)
            return {
                "slots": self.slots,
                "time_limit_s": self.time_limit_s,
                "held": [self._answer(lease, now) for lease in self.holders],
                "queued": [self._answer(lease, now) for lease in self.line],
            }

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _own(self, lease_id: str, user: str, teacher: bool = False) -> Lease:
        lease = self.leases.get(lease_id)
        if lease is None or (lease.user != user and not teacher):
            raise UnknownLease(f"no training slot lease {lease_id[:20]!r} of {user}; ask for a new slot")
        return lease

    def _tick(self, now: float) -> None:
        for lease in list(self.line) + list(self.holders):
            if now - lease.last_heartbeat > self.heartbeat_timeout_s:
                self._end(lease, now, EXPIRED, f"no heartbeat for {self.heartbeat_timeout_s:g} s")
            elif lease.state == GRANTED and now - held_since(lease, now) > self.time_limit_s:
                self._end(lease, now, REVOKED, f"time limit of {self.time_limit_s / 60:g} min reached")
        self._grant(now)

    def _grant(self, now: float) -> None:
        while self.line and len(self.holders) < self.slots:
            lease = self.line.popleft()
            lease.state, lease.granted_at = GRANTED, now
            self.holders.append(lease)

    def _end(self, lease: Lease, now: float, state: str, reason: str) -> None:
        if lease in self.holders:
            self.holders.remove(lease)
        if lease in self.line:
            self.line.remove(lease)
        lease.state, lease.ended_at, lease.reason = state, now, reason
        self.ended.append(lease)

    def typical_hold_s(self) -> float:
        """How long a run usually holds a slot: the mean of recent ones, else the time limit."""
        held = [lease.ended_at - lease.granted_at for lease in self.ended if lease.granted_at is not None and lease.ended_at is not None]
        return sum(held) / len(held) if held else self.time_limit_s

    def _answer(self, lease: Lease, now: float) -> dict[str, Any]:
        answer: dict[str, Any] = {"lease_id": lease.lease_id, "user": lease.user, "label": lease.label,
                                  "state": lease.state, "figures": lease.figures}  # fmt: skip
        if lease.state == QUEUED:
            place = list(self.line).index(lease) + 1
            answer.update(position=place, wait_s=self._wait_s(place, now))
            answer["message"] = f"queued: {ordinal(place)} in line, about {max(1, round(answer['wait_s'] / 60))} min"
        elif lease.state == GRANTED:
            left = self.time_limit_s - (now - held_since(lease, now))
            answer.update(held_s=now - held_since(lease, now), time_left_s=max(0.0, left))
            answer["message"] = f"training: {max(0, math.floor(left / 60))} min left of the slot"
        else:
            answer["message"] = f"{lease.state}: {lease.reason}"
        return answer

    def _wait_s(self, place: int, now: float) -> float:
        """Rough wait of the ``place``-th in line: the holders' remaining typical time, then whole rounds."""
        typical = self.typical_hold_s()
        remaining = sorted(max(0.0, typical - (now - held_since(h, now))) for h in self.holders)
        first_free = remaining[(place - 1) % self.slots] if len(remaining) == self.slots else 0.0
        return first_free + ((place - 1) // self.slots) * typical


def held_since(lease: Lease, now: float) -> float:
    """When ``lease`` got its slot (``now`` while it has none)."""
    return lease.granted_at if lease.granted_at is not None else now


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
