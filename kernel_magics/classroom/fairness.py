"""Fair turns in front of the engine: per-user concurrency caps, round-robin between users, token budgets.

Every generation request of the class passes through one :class:`FairScheduler`. Each user has a line of
their own; the scheduler thread hands requests to the engine one user at a time in rotation, never more
than ``per_user`` of one user inside the engine at once and never more than ``capacity`` in all. A student
who sends 100 prompts fills only their own line: a classmate's single request goes to the engine at the
next free place, behind at most the requests already inside it. :class:`TokenMeter` counts each user's
prompt + reply tokens over the last minute; past the teacher's budget a request gets 429 + Retry-After.

:meth:`FairScheduler.exclusive` runs a change to the engine (loading an adapter) while nothing generates.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import SwiftServeError

T = TypeVar("T")
WINDOW_S = 60.0


@dataclass
class Ticket:
    """One request of one user, from its arrival in line to its end."""

    user: str
    handle: Any  # a RequestHandle
    dispatched_before: int  # requests sent to the engine before it arrived
    ahead: int | None = None  # requests sent to the engine between its arrival and its own turn
    done: bool = False


@dataclass
class UserFigures:
    """What the teacher's view shows of one user."""

    requests: deque[float] = field(default_factory=deque)  # finish times (last WINDOW_S)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (time, prompt + reply tokens)
    dispatched: int = 0
    most_ahead: int = 0  # most requests of others that went to the engine while one of theirs waited


class TokenMeter:
    """Prompt + reply tokens per user over the last minute, against ``tokens_per_minute`` (0: no limit)."""

    def __init__(self, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = tokens_per_minute
        self.clock = clock
        self.users: dict[str, UserFigures] = {}
        self.lock = threading.Lock()

    def figures(self, user: str) -> UserFigures:
        with self.lock:
            return self.users.setdefault(user, UserFigures())

    def add(self, user: str, tokens: int) -> None:
        now = self.clock()
        figures = self.figures(user)
        with self.lock:
            figures.tokens.append((now, tokens))
            figures.requests.append(now)
            self._forget(figures, now)

    def used(self, user: str) -> int:
        figures = self.figures(user)
        with self.lock:
            self._forget(figures, self.clock())
            return sum(n for _, n in figures.tokens)

    def last_minute(self, user: str) -> tuple[int, int]:
        """Requests finished and tokens used by ``user`` over the last minute."""
        figures = self.figures(user)
        with self.lock:
            self._forget(figures, self.clock())
            return len(figures.requests), sum(n for _, n in figures.tokens)

    def retry_after(self, user: str) -> int | None:
        """Seconds until ``user`` is under budget again, or None when they are under it now."""
        if self.limit <= 0:
            return None
        figures = self.figures(user)
        with self.lock:
            now = self.clock()
            self._forget(figures, now)
            used = sum(n for _, n in figures.tokens)
            if used < self.limit:
                return None
            for at, n in figures.tokens:  # oldest first: when enough has left the window
                used -= n
                if used < self.limit:
                    return max(1, math.ceil(at + WINDOW_S - now))
        return int(WINDOW_S)

    @staticmethod
    def _forget(figures: UserFigures, now: float) -> None:
        while figures.tokens and figures.tokens[0][0] < now - WINDOW_S:
            figures.tokens.popleft()
        while figures.requests and figures.requests[0] < now - WINDOW_S:
            figures.requests.popleft()


class FairScheduler:
    """Round-robin between users' lines in front of an engine's ``submit``."""

    def __init__(self, engine: Any, capacity: int, per_user: int, meter: TokenMeter) -> None:
        self.engine = engine
        self.capacity = max(1, capacity)
        self.per_user = max(1, per_user)
        self.meter = meter
        self.lines: dict[str, deque[Ticket]] = {}
        self.running: dict[str, list[Ticket]] = {}
        self.rotation: deque[str] = deque()
        self.dispatched = 0
        self._paused = 0
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="km-classroom-turns", daemon=True)

    def start(self) -> FairScheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self._thread.join(5)

    # -- requests ------------------------------------------------------------------------------------
    def submit(self, user: str, handle: Any) -> Ticket:
        """Put ``handle`` in ``user``'s line; it reaches the engine in its turn."""
        with self._cv:
            ticket = Ticket(user, handle, self.dispatched)
            self._watch(ticket)
            self.lines.setdefault(user, deque()).append(ticket)
            if user not in self.rotation:
                self.rotation.append(user)
            self._cv.notify_all()
        return ticket

    def waiting(self, user: str) -> int:
        with self._cv:
            return len(self.lines.get(user, ()))

    def inside(self, user: str | None = None) -> int:
        with self._cv:
            if user is not None:
                return len(self.running.get(user, ()))
            return sum(len(v) for v in self.running.values())

    def _watch(self, ticket: Ticket) -> None:
        """Hear of the request's last delta (its tokens count against the user's budget)."""
        handle, push = ticket.handle, ticket.handle.push

        def push_and_note(item: Any) -> None:
            push(item)
            if handle.finished:
                tokens = getattr(item, "prompt_tokens", 0) + getattr(item, "completion_tokens", 0)
                self.meter.add(ticket.user, int(tokens))
                with self._cv:
                    ticket.done = True
                    self._cv.notify_all()

        handle.push = push_and_note

    # -- turns ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                self._sweep()
                while not self._paused and self._dispatch_one():
                    pass
                self._cv.wait(0.05)

    def _sweep(self) -> None:
        """Forget finished or cancelled requests, inside the engine and in line."""
        for tickets in self.running.values():
            tickets[:] = [t for t in tickets if not (t.done or t.handle.finished or t.handle.cancelled.is_set())]
        for line in self.lines.values():
            while line and line[0].handle.cancelled.is_set():
                line.popleft()
            if any(t.handle.cancelled.is_set() for t in line):
                kept = [t for t in line if not t.handle.cancelled.is_set()]
                line.clear()
                line.extend(kept)

    def _dispatch_one(self) -> bool:
        """Send the next user's oldest request to the engine; False when nobody may go now."""
        if sum(len(v) for v in self.running.values()) >= self.capacity:
            return False
        for _ in range(len(self.rotation)):
            user = self.rotation[0]
            self.rotation.rotate(-1)
            line = self.lines.get(user)
            if line and len(self.running.get(user, ())) < self.per_user:
                self._send(line.popleft())
                if not line:
                    self.rotation.remove(user)
                return True
        return False

    def _send(self, ticket: Ticket) -> None:
        ticket.ahead = self.dispatched - ticket.dispatched_before
        self.dispatched += 1
        figures = self.meter.figures(ticket.user)
        figures.dispatched += 1
        figures.most_ahead = max(figures.most_ahead, ticket.ahead)
        self.running.setdefault(ticket.user, []).append(ticket)
        try:
            self.engine.submit(ticket.handle)
        except RuntimeError as exc:  # shutting down
            ticket.handle.push(exc)

    # -- changes to the engine -----------------------------------------------------------------------
    def exclusive(self, change: Callable[[], T], timeout_s: float = 600.0) -> T:
        """Run ``change`` once every request inside the engine has finished; none is sent meanwhile."""
        with self._cv:
            self._paused += 1
            deadline = time.monotonic() + timeout_s
            while any(self.running.values()):
                self._sweep()
                if time.monotonic() > deadline:
                    self._paused -= 1
                    raise SwiftServeError(f"the engine stayed busy for {timeout_s:g} s; try the change again")
                self._cv.wait(0.05)
        try:
            return change()
        finally:
            with self._cv:
                self._paused -= 1
                self._cv.notify_all()
