"""The teacher's side: the class's status from the service, and the two things a teacher does to it.

``%swift teacher`` (``km.teacher()``) fetches ``GET /classroom/status`` with the teacher's hub token and shows
it as a panel (``widgets/classroom.py``): users with their requests and tokens over the last minute, adapters
per student (Unload), training slots held (Stop) and the line, the service's memory. Light module: standard
library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .client import call, service


@dataclass
class ClassView:
    """The class as ``GET /classroom/status`` answered it; ``refresh()`` asks again."""

    url: str
    token: str
    data: dict[str, Any] = field(default_factory=dict)

    def refresh(self) -> ClassView:
        self.data = call("GET", f"{self.url}/classroom/status", self.token)
        return self

    def stop_run(self, lease_id: str) -> dict[str, Any]:
        """End a run's training slot (its run sees ``revoked``/``released`` at its next heartbeat)."""
        return call("DELETE", f"{self.url}/classroom/slots/{quote(lease_id, safe='')}", self.token)

    def unload(self, model: str) -> dict[str, Any]:
        """Stop serving a student's adapter ``user/name`` (its files are removed)."""
        user, _, name = model.partition("/")
        return call("DELETE", f"{self.url}/classroom/adapters/{quote(user, safe='')}/{quote(name, safe='')}", self.token)

    def users(self) -> list[dict[str, Any]]:
        return [{"user": name, **row} for name, row in sorted(self.data.get("users", {}).items())]

    def adapters(self) -> list[str]:
        return [f"{user}/{name}" for user, names in sorted(self.data.get("adapters", {}).items()) for name in names]

    def to_text(self) -> str:
        """The status as lines for a terminal."""
        slots = self.data.get("slots", {})
        lines = [f"{self.data.get('model')} on {self.data.get('backend')}; memory {self.data.get('memory', {}).get('rss_mb')} MiB RSS"]
        lines += [f"  {u['user']:<16} {u['requests_last_min']:>4} req/min {u['tokens_last_min']:>7} tok/min "
                  f"{u['waiting']:>3} waiting {u['inside']:>3} inside" for u in self.users()]  # fmt: skip
        lines.append(f"adapters: {', '.join(self.adapters()) or 'none'}")
        lines += [f"  training: {s['user']} {s['label']} ({s['message']})" for s in slots.get("held", [])]
        lines += [f"  queued: {s['user']} {s['label']} ({s['message']})" for s in slots.get("queued", [])]
        return "\n".join(lines)


def teacher(url: str | None = None, token: str | None = None) -> ClassView:
    """The class's status (teachers only: hub admins or the teacher group; students get a one-line 403)."""
    base, key = service(url, token)
    return ClassView(base, key).refresh()
