"""Query understanding: English or Chinese phrases become structured filters and preferences.

``understand("适合手机部署的小模型")`` finds 手机 (phone: at most 4B, a quantized build) and 小模型 (small:
at most 4B); ``understand("long context model for summarising contracts")`` finds a minimum context of
100k tokens. Each recognised phrase is kept with its meaning so results can say why they matched.

Hard constraints come from what the user states (sizes, input modalities, languages, licenses, formats,
context, specialised tasks, release dates); soft preferences (chat, captioning, recency...) only reorder
results, and "newest" / "最新" sorts them by release. Relative dates ("last 6 months", "近一年") count back
from ``as_of``, the catalog's date (:func:`kernel_magics.search.timeframe.catalog_month`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import SwiftConfigError
from .lexicon import to_english
from .license_phrases import license_matches
from .licenses import COMMERCIAL, PERMISSIVE
from .phrases import LONG_CONTEXT, QUANTIZED, RULES, SMALL_B, SPECIALISED_TASKS, Rule
from .sizes import Match, context_matches, size_matches
from .text import STOPWORDS
from .timeframe import month_name, time_matches, window_label

__all__ = [
    "COMMERCIAL",
    "LONG_CONTEXT",
    "PERMISSIVE",
    "QUANTIZED",
    "SMALL_B",
    "SPECIALISED_TASKS",
    "Phrase",
    "Understanding",
    "understand",
]


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


def understand(query: str, as_of: str | None = None) -> Understanding:
    """Read filters and preferences from ``query`` (English, Chinese or both).

    ``as_of`` (YYYY-MM) is the date relative phrases count back from; by default the packaged catalog's.
    """
    if as_of is None:
        from .catalog import load_catalog
        from .timeframe import catalog_month

        as_of = catalog_month(load_catalog())
    result = Understanding(query=query, as_of=as_of)
    text = query.lower()
    matches = context_matches(query, text) + size_matches(query, text) + license_matches(query, text)
    matches += time_matches(query, text, as_of)
    for rule in RULES:
        for m in rule.pattern.finditer(text):
            words = re.split(r":| \(", rule.meaning)[0].lower()
            matches.append(Match(m.start(), m.end(), _rule_effect(rule), query[m.start() : m.end()], words))
    # longest non-overlapping matches win (e.g. 看图说话 over 看图 and 说话, "1m context" over "1m")
    matches.sort(key=lambda m: (-(m.end - m.start), m.start))
    taken: list[Match] = []
    for match in matches:
        if all(match.end <= t.start or match.start >= t.end for t in taken):
            taken.append(match)
    for match in sorted(taken, key=lambda m: m.start):
        meaning = match.apply(result, match.text)
        if meaning:
            result.phrases.append(Phrase(match.text.strip(), meaning))
    result.retrieval_text = _retrieval_text(query, sorted(taken, key=lambda m: m.start))
    return result


def _retrieval_text(query: str, taken: list[Match]) -> str:
    """The query's words for retrieval: each understood phrase as its canonical English words, the other
    Chinese words translated, filler dropped, sorted, so an English query and its Chinese twin rank alike."""
    pieces: list[str] = []
    position = 0
    for match in taken:
        pieces += [to_english(query[position : match.start]), match.words]
        position = match.end
    pieces.append(to_english(query[position:]))
    words = _WORDS.findall(" ".join(pieces).lower())
    return " ".join(sorted({w for w in words if w not in STOPWORDS and w not in _FILLER}))


_WORDS = re.compile(r"[a-z0-9]+(?:[.\-+][a-z0-9]+)*")
# words that only frame a phrase already understood ("released in", "with a ... build", "licensed")
_FILLER = frozenset(
    "released release come came out from since with without that which supports support supporting build builds "
    "version versions license licence licensed licenced under by about around between input".split()
)


def _rule_effect(rule: Rule):
    effect = rule.effect

    def apply(u: Understanding, text: str) -> str:
        if "max_b" in effect:
            u.bound_size(None, effect["max_b"], f"'{text.strip()}'")
        if effect.get("small"):
            u.prefer_small = True
        if "modality" in effect:
            u.modalities.add(effect["modality"])
        if effect.get("speech"):
            u.speech = True
        if "languages" in effect:
            u.languages.update(effect["languages"])
        if effect.get("multilingual"):
            u.multilingual = True
        if "task" in effect:
            group = frozenset({effect["task"]})
            if group not in u.task_groups:
                u.task_groups.append(group)
        if "tasks_any" in effect:
            group = frozenset(effect["tasks_any"])
            if group not in u.task_groups:
                u.task_groups.append(group)
        if "soft_task" in effect:
            u.soft_tasks.add(effect["soft_task"])
        if "formats" in effect:
            new = frozenset(effect["formats"])
            u.formats = new if u.formats is None else (u.formats & new) or new
        if "soft_formats" in effect:
            u.soft_formats.update(effect["soft_formats"])
        if "min_context" in effect:
            u.min_context = max(u.min_context or 0, effect["min_context"])
        if effect.get("moe"):
            u.moe = True
        if effect.get("recent"):
            u.prefer_recent = True
        return rule.meaning

    return apply
