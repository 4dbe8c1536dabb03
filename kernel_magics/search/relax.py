"""Short answers explained: when fewer than ``k`` cards pass every filter, relax the one that removed the most.

Only filters read from the query's words are relaxed (explicit arguments such as ``max_params_b=3`` are the
user's hard limits). Constraints (size, active size, format, language, license, context, a named family)
are relaxed before the kind of model asked for (inputs, tasks, mixture of experts). The cards the relaxed
filter removed are offered after the strict ones, nearest first (closest size or context to the bound),
and each result row names the filter it was let through in the ``relaxed`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .filters import Filter

EMPTY = np.zeros(0, dtype=np.int64)


@dataclass
class Selection:
    """Which cards a query may return: those passing every filter and those let through by relaxing."""

    strict: np.ndarray
    relaxed: np.ndarray = field(default_factory=lambda: EMPTY)
    dropped: list[Filter] = field(default_factory=list)
    gaps: dict[int, float] = field(default_factory=dict)  # card index -> distance from the relaxed bounds
    note: str = ""

    @property
    def label(self) -> str:
        """What the relaxed rows were let through (the ``relaxed`` column)."""
        return " + ".join(f.label for f in self.dropped)

    @property
    def empty(self) -> bool:
        return not len(self.strict) and not len(self.relaxed)


def select(cards: list[dict[str, Any]], filters: list[Filter], k: int) -> Selection:
    """The strict candidates, and when there are fewer than ``k``, the nearest relaxed ones."""
    if not filters:
        return Selection(np.arange(len(cards), dtype=np.int64))
    strict = np.array([i for i, c in enumerate(cards) if all(f.test(c) for f in filters)], dtype=np.int64)
    if len(strict) >= k:  # the usual case: no need to test every filter on every card
        return Selection(strict)
    passes = np.array([[f.test(c) for f in filters] for c in cards], dtype=bool).reshape(len(cards), len(filters))
    strict_mask = passes.all(axis=1)
    kept = np.ones(len(filters), dtype=bool)
    order: list[int] = []
    relaxable = [i for i, f in enumerate(filters) if f.relaxable]
    extra = EMPTY
    gain = 0
    while relaxable and not len(extra):
        gains = {i: _gain(passes, kept, i, strict_mask) for i in relaxable}
        best = max(relaxable, key=lambda i: (gains[i] > 0, -filters[i].relax_order, gains[i], -i))
        relaxable.remove(best)
        kept[best] = False
        order.append(best)
        extra = np.flatnonzero(passes[:, kept].all(axis=1) & ~strict_mask).astype(np.int64)
        gain = len(extra)
    dropped = [filters[i] for i in order] if len(extra) else []
    selection = Selection(strict, extra, dropped)
    selection.gaps = {int(i): sum(f.gap(cards[i]) for f in dropped) for i in extra}
    selection.note = _note(selection, filters, gain)
    return selection


def _gain(passes: np.ndarray, kept: np.ndarray, drop: int, strict_mask: np.ndarray) -> int:
    """How many more cards pass when filter ``drop`` is dropped too."""
    keep = kept.copy()
    keep[drop] = False
    return int((passes[:, keep].all(axis=1) & ~strict_mask).sum())


def _note(selection: Selection, filters: list[Filter], gain: int) -> str:
    count = len(selection.strict)
    if not count:
        passed = "no model passes"
    else:
        passed = "only 1 model passes" if count == 1 else f"only {count} models pass"
    if not selection.dropped:
        if not count:
            return "no model in the catalog passes " + ", ".join(f.label for f in filters)
        kept = [f.label for f in filters if not f.relaxable]
        return (
            f"{passed} "
            + ", ".join(f.label for f in filters)
            + (" (given as arguments, so not relaxed)" if kept else "")
        )
    what = f"'{selection.label}' removed the most"
    return (
        f"{passed} every condition; {what} ({gain} more without it): "
        f"the nearest follow, marked relaxed: {selection.label}"
    )
