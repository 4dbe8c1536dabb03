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

from .lexicon import to_english
from .license_phrases import license_matches
from .phrases import RULES, Rule
from .sizes import context_matches, size_matches
from .text import STOPWORDS
from .timeframe import time_matches
from .understanding import Match, Phrase, Understanding


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
