"""What a search query was understood to ask for: the ``Understanding`` the phrase readers fill in.

Each phrase reader (:mod:`.sizes`, :mod:`.timeframe`, :mod:`.license_phrases`, the rules of :mod:`.phrases`)
returns ``Match`` objects; :func:`kernel_magics.search.understand.understand` applies the longest
non-overlapping ones to one ``Understanding``, which the filters, the ranking and the relaxed answers read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import SwiftConfigError
from .months import month_name, window_label


@dataclass
class Match:
    """A phrase found in the query: where it is and what applying it does to an ``Understanding``."""

    start: int
    end: int
    apply: Any  # callable(Understanding, text) -> meaning
    text: str
    words: str = ""  # what the phrase stands for in text retrieval, the same in English and Chinese


@dataclass(frozen=True)
class Phrase:
    """A piece of the query we understood and what we took it to mean."""

    text: str
    meaning: str


@dataclass
class Understanding:
    """Filters and preferences read from a query (plus the words left for text retrieval)."""

    query: str
    phrases: list[Phrase] = field(default_factory=list)
    modalities: set[str] = field(default_factory=set)  # required inputs, all of them
    languages: set[str] = field(default_factory=set)  # required languages, all of them
    task_groups: list[frozenset[str]] = field(default_factory=list)  # each group: one of these tasks
    soft_tasks: set[str] = field(default_factory=set)
    licenses: frozenset[str] | None = None  # any of these
    excluded_licenses: frozenset[str] = frozenset()  # none of these
    license_label: str = ""
    formats: frozenset[str] | None = None  # at least one of these builds
    soft_formats: set[str] = field(default_factory=set)
    min_params_b: float | None = None
    max_params_b: float | None = None
    min_source: str = ""
    max_source: str = ""
    min_active_b: float | None = None  # bounds on the active parameters of a mixture of experts
    max_active_b: float | None = None
    min_active_source: str = ""
    max_active_source: str = ""
    explicit_size: bool = False  # a size bound came from an argument (never relaxed)
    explicit_active: bool = False
    min_context: int | None = None
    speech: bool = False  # audio input or a speech task (asr / tts)
    multilingual: bool = False
    prefer_recent: bool = False
    prefer_small: bool = False
    moe: bool = False  # mixture of experts: fewer active than total parameters
    as_of: str = ""  # the catalog's date (YYYY-MM) relative phrases were resolved against
    released_from: int | None = None  # release month range (timeframe.month_index), inclusive
    released_until: int | None = None
    time_source: str = ""
    sort_recent: bool = False  # "newest" / "最新": newest first
    name_free: list[str] = field(default_factory=list)  # phrases whose names are not models ("Llama licence")
    retrieval_text: str = ""  # the query for BM25 / dense: phrases as canonical English words, the rest as is

    @property
    def has_constraints(self) -> bool:
        return bool(
            self.modalities
            or self.languages
            or self.task_groups
            or self.licenses is not None
            or bool(self.excluded_licenses)
            or self.released_from is not None
            or self.released_until is not None
            or self.formats is not None
            or self.min_params_b is not None
            or self.max_params_b is not None
            or self.min_active_b is not None
            or self.max_active_b is not None
            or self.min_context is not None
            or self.speech
            or self.multilingual
            or self.moe
        )

    @property
    def has_preferences(self) -> bool:
        return bool(self.soft_tasks or self.soft_formats or self.prefer_recent or self.prefer_small)

    @property
    def time_label(self) -> str:
        """The release window as words ("released 2024-01 or later"), "" when there is none."""
        return window_label(self.released_from, self.released_until)

    def time_attrs(self) -> dict[str, object]:
        """The time filter for ``frame.attrs["time"]``: months (YYYY-MM or None), order and catalog date."""
        return {
            "released_from": month_name(self.released_from) if self.released_from is not None else None,
            "released_until": month_name(self.released_until) if self.released_until is not None else None,
            "filter": self.time_label,
            "sort": "newest first" if self.sort_recent else "relevance",
            "as_of": self.as_of,
        }

    def bound_time(self, low: int | None, high: int | None, source: str) -> None:
        """Intersect the release window with ``[low, high]`` (months); a window that cannot hold raises."""
        if low is not None and (self.released_from is None or low > self.released_from):
            self.released_from = low
        if high is not None and (self.released_until is None or high < self.released_until):
            self.released_until = high
        if self.released_from is not None and self.released_until is not None:
            if self.released_from > self.released_until:
                raise SwiftConfigError(
                    f"contradictory release dates: {source} leaves no month after {self.time_source}; drop one"
                )
        self.time_source = f"{self.time_source} and {source}" if self.time_source else source

    def bound_size(self, low: float | None, high: float | None, source: str, active: bool = False) -> None:
        """Intersect the total (or ``active``) size range with ``[low, high]`` billions; contradictions raise."""
        prefix = "min_active" if active else "min_params"
        top = "max_active" if active else "max_params"
        low_name, high_name = f"{prefix}_b", f"{top}_b"
        low_src = "min_active_source" if active else "min_source"
        high_src = "max_active_source" if active else "max_source"
        if low is not None and (getattr(self, low_name) is None or low > getattr(self, low_name)):
            setattr(self, low_name, low)
            setattr(self, low_src, source)
        if high is not None and (getattr(self, high_name) is None or high < getattr(self, high_name)):
            setattr(self, high_name, high)
            setattr(self, high_src, source)
        least, most = getattr(self, low_name), getattr(self, high_name)
        if least is not None and most is not None and least > most:
            what = "active-parameter" if active else "size"
            raise SwiftConfigError(
                f"contradictory {what} filters: at least {_b(least)} ({getattr(self, low_src)}) and at most "
                f"{_b(most)} ({getattr(self, high_src)}); drop one of them"
            )


def _b(value: float) -> str:
    return f"{value:g}B"
