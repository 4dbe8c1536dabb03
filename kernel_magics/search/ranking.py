"""Ranking the cards a query may return: fused BM25, dense and preference ranks, or release order.

The strict cards (passing every filter) come first, best fused score first; "newest" / "最新" orders them
by release month instead (all of them when the query has filters, else the most relevant ones). Cards let
through by a relaxed filter follow, nearest to its bounds first. Every row says why it matched and what
its licence lets you do (``license_verdict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalog import COLUMNS
from .filters import Filter
from .fusion import preference_score, ranks, rrf
from .index import SearchIndex
from .lexicon import has_cjk, to_english
from .licenses import verdict
from .months import month_index
from .relax import Selection
from .text import tokenize
from .understanding import Understanding

RESULT_COLUMNS = (*COLUMNS, "local", "path", "license_verdict", "score", "why", "relaxed")
# fusion weights of the three ranked lists; dense similarity below DENSE_FLOOR counts as "no match"
WEIGHTS = {"bm25": 1.0, "dense": 1.0, "prefs": 1.0}
DENSE_FLOOR = 0.5
RECENT_POOL = 20  # "newest" without filters: the release order of at least this many most relevant cards


def frame_of(rows: list[dict[str, Any]], attrs: dict[str, Any]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame.attrs.update(attrs)
    return frame


def _nearest(selection: Selection, order: list[int]) -> list[int]:
    """Relaxed cards in ``order``, the closest to the relaxed bounds first (a stable sort keeps ``order``)."""
    return sorted(order, key=lambda i: selection.gaps.get(int(i), 0.0))


def newest(
    cards: list[dict[str, Any]], selection: Selection, filters: list[Filter], k: int, attrs: dict[str, Any]
) -> Any:
    def by_release(indices: Any) -> list[int]:
        return sorted(indices, key=lambda i: (cards[i]["release"], cards[i]["params_b"] or 0), reverse=True)

    strict = by_release(selection.strict)[:k]
    relaxed = _nearest(selection, by_release(selection.relaxed))[: k - len(strict)]
    if not attrs["note"]:
        attrs["note"] = "no query: the newest models" + (" that pass the filters" if filters else "")
    rows = [_row(cards[i], 0.0, _filter_why(cards[i], filters, []), "") for i in strict]
    rows += [_row(cards[i], 0.0, _filter_why(cards[i], filters, selection.dropped), selection.label) for i in relaxed]
    return frame_of(rows, attrs)


def _filter_why(card: dict[str, Any], filters: list[Filter], dropped: list[Filter]) -> list[str]:
    return [("relaxed " if any(f is d for d in dropped) else "") + f.why(card) for f in filters]


@dataclass
class _Scores:
    """The ranked channels of one query over the candidate cards."""

    tokens: list[str]
    bm25: np.ndarray | None
    dense: np.ndarray | None
    prefs: np.ndarray | None
    lists: list[tuple[dict[int, int], float]]


def _scores(
    index: SearchIndex, cards: list[dict[str, Any]], candidates: np.ndarray, text: str, u: Understanding, mode: str
) -> _Scores:
    if mode == "hybrid" and u.retrieval_text:  # the same words for a query and its Chinese twin
        text = u.retrieval_text
    query_tokens = tokenize(text)
    english = to_english(text) if has_cjk(text) else text
    if has_cjk(text) and mode == "hybrid":
        query_tokens += [t for t in tokenize(english) if t not in query_tokens]
    lists: list[tuple[dict[int, int], float]] = []
    bm25 = index.bm25_scores(query_tokens) if mode in ("hybrid", "bm25") else None
    dense_text = text if index.embedder is not None and index.embedder.multilingual else english
    dense = index.dense_scores(dense_text) if mode in ("hybrid", "dense") else None
    if bm25 is not None:
        lists.append((ranks(bm25, candidates), WEIGHTS["bm25"]))
    if dense is not None:
        lists.append((ranks(dense, candidates, positive_only=False), WEIGHTS["dense"]))
    prefs = None
    if mode == "hybrid" and (u.has_preferences or u.task_groups):
        prefs = np.zeros(len(cards), dtype=np.float32)
        for i in candidates:
            prefs[i] = preference_score(cards[i], u)
        lists.append((ranks(prefs, candidates), WEIGHTS["prefs"]))
    return _Scores(query_tokens, bm25, dense, prefs, lists)


def rank(
    index: SearchIndex,
    cards: list[dict[str, Any]],
    selection: Selection,
    text: str,
    u: Understanding,
    filters: list[Filter],
    k: int,
    mode: str,
    attrs: dict[str, Any],
) -> Any:
    candidates = np.concatenate([selection.strict, selection.relaxed])
    scores = _scores(index, cards, candidates, text, u, mode)
    no_text_match = scores.bm25 is None or float(scores.bm25[candidates].max()) <= 0
    weak_dense = scores.dense is None or float(scores.dense[candidates].max()) < DENSE_FLOOR
    if not u.phrases and not attrs["understood"] and no_text_match and weak_dense:
        attrs["note"] = (
            f"nothing in the catalog matches '{text[:60]}'; describe a task, size or language "
            "(e.g. 'small Chinese chat model under 3B')"
        )
        return frame_of([], attrs)
    fused = dict(zip((int(i) for i in candidates), rrf(scores.lists, candidates), strict=True))
    shares_word = (lambda i: scores.bm25[i] > 0) if mode == "bm25" else (lambda i: True)  # BM25 alone: a word
    strict = sorted((int(i) for i in selection.strict if shares_word(i)), key=lambda i: -fused[i])
    relaxed = sorted((int(i) for i in selection.relaxed if shares_word(i)), key=lambda i: -fused[i])
    if u.sort_recent:
        strict = _by_release(cards, strict if filters else strict[: max(RECENT_POOL, 3 * k)], fused)
        relaxed = _by_release(cards, relaxed, fused)
    strict = strict[:k]
    relaxed = _nearest(selection, relaxed)[: k - len(strict)]
    rows = [_row(cards[i], fused[i], _why(index, cards[i], i, filters, [], u, scores), "") for i in strict]
    for i in relaxed:
        why = _why(index, cards[i], i, filters, selection.dropped, u, scores)
        rows.append(_row(cards[i], fused[i], why, selection.label))
    if not rows and not attrs["note"]:
        attrs["note"] = f"no card shares a word with '{text[:60]}'"
    elif len(strict) < k and not attrs["note"] and mode == "bm25":
        attrs["note"] = f"only {len(strict)} of the cards share a word with '{text[:60]}'"
    return frame_of(rows, attrs)


def _by_release(cards: list[dict[str, Any]], order: list[int], fused: dict[int, float]) -> list[int]:
    """Newest release month first, the better fused score first within a month."""
    return sorted(order, key=lambda i: (-month_index(cards[i]["release"]), -fused[i]))


def _why(
    index: SearchIndex,
    card: dict[str, Any],
    i: int,
    filters: list[Filter],
    dropped: list[Filter],
    u: Understanding,
    scores: _Scores,
) -> list[str]:
    why = _filter_why(card, filters, dropped)
    if scores.prefs is not None:
        why += [f"{t} ✓" for t in sorted(u.soft_tasks & set(card["tasks"]))]
    if u.sort_recent and u.released_from is None and u.released_until is None:
        why.append(f"released {card['release'] or 'unknown'}")
    if scores.bm25 is not None and scores.bm25[i] > 0:
        terms = index.matched_terms(i, scores.tokens)
        if terms:
            why.append("terms: " + ", ".join(terms[:8]))
    if scores.dense is not None:
        why.append(f"similarity {float(scores.dense[i]):.2f}")
    return why


def _row(card: dict[str, Any], score: float, why: list[str], relaxed: str) -> dict[str, Any]:
    reasons = "; ".join(dict.fromkeys(w for w in why if w))
    return {**card, "license_verdict": verdict(card["license"]), "score": round(score, 5), "why": reasons,
            "relaxed": relaxed}  # fmt: skip
