"""The teacher's view as JSON: the training queue, slots held, adapters per student, each user's requests and
tokens over the last minute, and the memory the service holds."""

from __future__ import annotations

import resource
import sys
from typing import Any

from .fairness import WINDOW_S


def class_status(state: Any) -> dict[str, Any]:
    """Everything ``GET /classroom/status`` answers (``state``: a :class:`~.service.Classroom`)."""
    turns, meter = state.turns, state.turns.meter
    users = sorted(set(meter.users) | set(turns.lines) | set(turns.running))
    adapters: dict[str, list[str]] = {}
    for model in state.engine.models[1:]:
        owner, _, name = model.partition("/")
        adapters.setdefault(owner, []).append(name)
    return {
        "model": state.engine.models[0],
        "backend": state.backend,
        "window_s": WINDOW_S,
        "users": {user: _user_row(turns, meter, user) for user in users},
        "adapters": adapters,
        "slots": state.slots.status(),
        "memory": memory(),
        "settings": state.public_settings(),
    }


def _user_row(turns: Any, meter: Any, user: str) -> dict[str, Any]:
    figures = meter.figures(user)
    requests, tokens = meter.last_minute(user)
    return {
        "requests_last_min": requests,
        "tokens_last_min": tokens,
        "waiting": turns.waiting(user),
        "inside": turns.inside(user),
        "dispatched": figures.dispatched,
        "most_ahead": figures.most_ahead,
    }


def memory() -> dict[str, Any]:
    """This process's resident memory (peak and now) and, on CUDA, the device memory torch holds."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures: dict[str, Any] = {"rss_peak_mb": round(peak_kb / 1024, 1) if sys.platform != "darwin" else round(peak_kb / 2**20, 1)}
    try:
        with open("/proc/self/statm") as fh:
            import os

            figures["rss_mb"] = round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        figures["cuda"] = [
            {"device": i, "allocated_mb": round(torch.cuda.memory_allocated(i) / 2**20, 1),
             "reserved_mb": round(torch.cuda.memory_reserved(i) / 2**20, 1)}
            for i in range(torch.cuda.device_count())
        ]  # fmt: skip
    return figures
