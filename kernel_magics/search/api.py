"""``km.search`` and ``km.catalog``: find base models by describing them, in English or Chinese.

::

    km.search("small chinese chat model under 3B with a GGUF build", k=5)
    km.search("能看图说话、支持中文对话的视觉问答模型", k=5)
    km.search("code model", k=10, max_params_b=8, license="apache-2.0", formats="gguf")

    km.search("mixture-of-experts chat model with fewer than 5B active parameters")
    km.search(refresh=True, limit=50)  # pull this month's models from the Hub first (when online)

Ranking is hybrid and explainable: BM25 over bilingual card texts, dense similarity of card sentences
(sentence-transformers) and the structured preferences read by query understanding, fused with
reciprocal rank fusion, after hard filters (explicit arguments and understood phrases such as "under 3B",
"看图", "中文", "GGUF", "3B active"). Each result says why it matched. When fewer than ``k`` cards pass,
the understood filter that removed the most is relaxed and the nearest cards it removed follow the strict
ones, named in the ``relaxed`` column (see :mod:`kernel_magics.search.relax`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SwiftConfigError, SwiftUsageError
from .catalog import COLUMNS
from .commands import billions, token_count
from .entities import EntityIndex
from .filters import Filter, explicit_filters, listify, understood_filters
from .fusion import preference_score, ranks, rrf
from .index import SearchIndex, build_index
from .lexicon import has_cjk, to_english
from .relax import Selection, select
from .sources import all_cards, catalog, joined
from .text import tokenize
from .understand import Understanding, understand

__all__ = ["RESULT_COLUMNS", "all_cards", "catalog", "print_results", "search"]

MAX_QUERY_CHARS = 2000
MODES = ("hybrid", "bm25", "dense")
RESULT_COLUMNS = (*COLUMNS, "local", "path", "score", "why", "relaxed")
# fusion weights of the three ranked lists; dense similarity below DENSE_FLOOR counts as "no match"
WEIGHTS = {"bm25": 1.0, "dense": 1.0, "prefs": 1.0}
DENSE_FLOOR = 0.5
_entity_memo: dict[int, tuple[list[dict[str, Any]], EntityIndex]] = {}


def _frame(rows: list[dict[str, Any]], attrs: dict[str, Any]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame.attrs.update(attrs)
    return frame


def search(
    query: str | None = None,
    k: int = 10,
    min_params_b: float | None = None,
    max_params_b: float | None = None,
    min_active_params_b: float | None = None,
    max_active_params_b: float | None = None,
    modalities: list[str] | str | None = None,
    tasks: list[str] | str | None = None,
    languages: list[str] | str | None = None,
    license: list[str] | str | None = None,  # noqa: A002 - the catalog column's name
    formats: list[str] | str | None = None,
    min_context: int | None = None,
    family: list[str] | str | None = None,
    include_local: bool = True,
    local_dirs: list[str] | None = None,
    mode: str = "hybrid",
    embedder: str | None = None,
    catalog: str | None = None,
    refresh: bool = False,
    limit: int | None = None,
) -> Any:
    """Search the model catalog; returns a DataFrame of the best ``k`` cards with ``score``, ``why``, ``relaxed``.

    Args:
        query: what you want, in English or Chinese ("small Chinese chat model under 3B with a GGUF
            build", "能看图说话的视觉问答模型", "MoE chat model with fewer than 5B active parameters").
            Sizes, input kinds, languages, licenses, formats and context lengths in it become filters.
            Empty: the newest models that pass the filters.
        k: how many results. When fewer than ``k`` pass every filter, the understood filter that removed
            the most is relaxed and the nearest cards it removed follow, named in the ``relaxed`` column.
        min_params_b / max_params_b: total parameter range in billions.
        min_active_params_b / max_active_params_b: active parameter range in billions (mixture-of-experts
            models only).
        modalities: inputs the model must accept (text, image, video, audio), all of them.
        tasks: tasks it must do (chat, code, vqa, embedding, asr...), all of them.
        languages: languages it must support (ISO codes or names), all of them.
        license: allowed licenses (any of them); ``"commercial"`` or ``"permissive"`` for groups.
        formats: builds it must have, any of them (gguf, awq, gptq, bnb-4bit, mlx, safetensors;
            ``"quantized"`` for any 4-bit build).
        min_context: minimum context length in tokens.
        family: model families (prefix match: ``"qwen"`` finds qwen2.5, qwen2-vl...).
        include_local: add models found in the local Hugging Face cache (marked ``local=True``).
        local_dirs: more folders holding models (a model folder or a folder of model folders).
        mode: ``hybrid`` (default), ``bm25`` (BM25 alone, no query understanding) or ``dense``.
        embedder: sentence-transformers model for the dense channel (``"none"`` turns it off).
        catalog: another catalog ``.jsonl`` file.
        refresh: first pull model cards from the Hub (:func:`kernel_magics.search.refresh.refresh_catalog`);
            offline it says so in ``frame.attrs["refresh"]`` and changes nothing.
        limit: with ``refresh``, how many models to pull per task.
    """
    text, k = _checked_query(query, k, mode)
    sizes = _sizes(min_params_b, max_params_b, min_active_params_b, max_active_params_b)
    min_context = _converted(token_count, min_context, "--min-context")
    refreshed = _refresh(limit) if refresh else ""
    catalog_cards, extra = all_cards(catalog, include_local, local_dirs)
    cards = joined(catalog_cards, extra)
    explicit = dict(modalities=modalities, tasks=tasks, languages=languages, license=license, formats=formats)
    explicit.update(min_context=min_context, family=family)
    filters = explicit_filters(cards, **explicit)
    u, mentions = _understood(cards, text, mode, sizes)
    filters += _mention_filters(mentions) + understood_filters(u)
    settings = {"include_local": include_local, "local_dirs": list(local_dirs or []), "mode": mode}
    settings.update(embedder=embedder, catalog=str(catalog) if catalog else None)
    attrs = _attrs(text, mode, mentions, u, filters, {"k": k, **sizes, **explicit}, settings)
    attrs["refresh"] = refreshed
    selection = select(cards, filters, k)
    attrs["note"] = selection.note
    if selection.empty:
        return _frame([], attrs)
    index = build_index(catalog_cards, extra, embedder=embedder, dense=mode != "bm25")
    attrs["embedder"] = index.embedder.name if index.embedder else None
    if not text or (not tokenize(text) and not attrs["understood"]):  # nothing but filler words
        return _newest(cards, selection, filters, k, attrs)
    return _rank(index, cards, selection, text, u, filters, k, mode, attrs)


def _attrs(
    text: str,
    mode: str,
    mentions: list[Any],
    u: Understanding,
    filters: list[Filter],
    args: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """What the result frame says about its query: understood phrases, filters, arguments, settings."""
    listed = ("modalities", "tasks", "languages", "license", "formats", "family")
    return {
        "query": text,
        "mode": mode,
        "understood": [f"{m.text} → {m.label}" for m in mentions] + [f"{p.text} → {p.meaning}" for p in u.phrases],
        "filters": [f.label for f in filters],
        "note": "",
        "refresh": "",
        "args": {key: listify(value) if key in listed else value for key, value in args.items()},
        "settings": settings,
    }


def _checked_query(query: Any, k: Any, mode: str) -> tuple[str, int]:
    text = " ".join(str(query or "").split())
    if len(text) > MAX_QUERY_CHARS:
        raise SwiftUsageError(
            f"the query is {len(text):,} characters long; describe the model in under {MAX_QUERY_CHARS} characters"
        )
    if mode not in MODES:
        raise SwiftUsageError(f"--mode: '{mode}' is not one of {', '.join(MODES)}")
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise SwiftConfigError(f"-k must be a whole number, got {k!r}") from None
    if k < 1:
        raise SwiftConfigError(f"-k must be at least 1, got {k}")
    return text, k


def _sizes(*values: Any) -> dict[str, float | None]:
    names = ("min_params_b", "max_params_b", "min_active_params_b", "max_active_params_b")
    return {name: _converted(billions, v, "--" + name.replace("_", "-")) for name, v in zip(names, values, strict=True)}


def _converted(convert: Any, value: Any, flag: str) -> Any:
    if value is None:
        return None
    try:
        out = convert(value)
    except (TypeError, ValueError) as exc:
        raise SwiftConfigError(f"{flag}: {exc}") from None
    if out < 0:
        raise SwiftConfigError(f"{flag} must not be negative, got {value!r}")
    return out


def _refresh(limit: int | None) -> str:
    from .refresh import refresh_catalog

    return refresh_catalog(limit=limit).message


def _understood(
    cards: list[dict[str, Any]], text: str, mode: str, sizes: dict[str, float | None]
) -> tuple[Understanding, list[Any]]:
    """What the query says (hybrid mode only) with the explicit size bounds merged in, and the names in it."""
    hybrid = bool(text) and mode == "hybrid"
    u = understand(text) if hybrid else Understanding(query=text)
    if sizes["min_params_b"] is not None or sizes["max_params_b"] is not None:
        u.bound_size(sizes["min_params_b"], sizes["max_params_b"], "--min-params-b/--max-params-b")
        u.explicit_size = True
    if sizes["min_active_params_b"] is not None or sizes["max_active_params_b"] is not None:
        source = "--min-active-params-b/--max-active-params-b"
        u.bound_size(sizes["min_active_params_b"], sizes["max_active_params_b"], source, active=True)
        u.explicit_active = True
    return u, (_entities(cards).mentions(text) if hybrid else [])


def _mention_filters(mentions: list[Any]) -> list[Filter]:
    if not mentions:
        return []
    named = frozenset().union(*(m.ids for m in mentions))
    label = " or ".join(dict.fromkeys(m.label for m in mentions))
    return [Filter(label, lambda c: c["id"] in named, relaxable=True)]


def _entities(cards: list[dict[str, Any]]) -> EntityIndex:
    entry = _entity_memo.get(id(cards))
    if entry is None or entry[0] is not cards:
        entry = (cards, EntityIndex(cards))
        _entity_memo.clear()
        _entity_memo[id(cards)] = entry
    return entry[1]


def _nearest(selection: Selection, order: list[int]) -> list[int]:
    """Relaxed cards in ``order``, the closest to the relaxed bounds first (a stable sort keeps ``order``)."""
    return sorted(order, key=lambda i: selection.gaps.get(int(i), 0.0))


def _newest(
    cards: list[dict[str, Any]], selection: Selection, filters: list[Filter], k: int, attrs: dict[str, Any]
) -> Any:
    def newest(indices: Any) -> list[int]:
        return sorted(indices, key=lambda i: (cards[i]["release"], cards[i]["params_b"] or 0), reverse=True)

    strict = newest(selection.strict)[:k]
    relaxed = _nearest(selection, newest(selection.relaxed))[: k - len(strict)]
    if not attrs["note"]:
        attrs["note"] = "no query: the newest models" + (" that pass the filters" if filters else "")
    rows = [_row(cards[i], 0.0, _filter_why(cards[i], filters, []), "") for i in strict]
    rows += [_row(cards[i], 0.0, _filter_why(cards[i], filters, selection.dropped), selection.label) for i in relaxed]
    return _frame(rows, attrs)


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


def _rank(
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
        return _frame([], attrs)
    fused = dict(zip((int(i) for i in candidates), rrf(scores.lists, candidates), strict=True))
    shares_word = (lambda i: scores.bm25[i] > 0) if mode == "bm25" else (lambda i: True)  # BM25 alone: a word
    strict = sorted((int(i) for i in selection.strict if shares_word(i)), key=lambda i: -fused[i])[:k]
    relaxed = sorted((int(i) for i in selection.relaxed if shares_word(i)), key=lambda i: -fused[i])
    relaxed = _nearest(selection, relaxed)[: k - len(strict)]
    rows = [_row(cards[i], fused[i], _why(index, cards[i], i, filters, [], u, scores), "") for i in strict]
    for i in relaxed:
        why = _why(index, cards[i], i, filters, selection.dropped, u, scores)
        rows.append(_row(cards[i], fused[i], why, selection.label))
    if not rows and not attrs["note"]:
        attrs["note"] = f"no card shares a word with '{text[:60]}'"
    elif len(strict) < k and not attrs["note"] and mode == "bm25":
        attrs["note"] = f"only {len(strict)} of the cards share a word with '{text[:60]}'"
    return _frame(rows, attrs)


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
    if scores.bm25 is not None and scores.bm25[i] > 0:
        terms = index.matched_terms(i, scores.tokens)
        if terms:
            why.append("terms: " + ", ".join(terms[:8]))
    if scores.dense is not None:
        why.append(f"similarity {float(scores.dense[i]):.2f}")
    return why


def _row(card: dict[str, Any], score: float, why: list[str], relaxed: str) -> dict[str, Any]:
    reasons = "; ".join(dict.fromkeys(w for w in why if w))
    return {**card, "score": round(score, 5), "why": reasons, "relaxed": relaxed}


def print_results(frame: Any) -> None:
    """Terminal view of a search result: one line per model, then why it matched; relaxed rows marked."""
    for key in ("refresh", "understood", "note"):
        value = frame.attrs.get(key)
        if value and key == "understood":
            print("understood: " + "; ".join(value))
        elif value:
            print(value)
    shown_relaxed = False
    for rank, row in enumerate(frame.itertuples(index=False), 1):
        if row.relaxed and not shown_relaxed:
            print(f"-- relaxed '{row.relaxed}': the nearest models outside it --")
            shown_relaxed = True
        size = f"{row.params_b:g}B" if row.params_b else "?B"
        if row.active_params_b and row.active_params_b == row.active_params_b:  # not NaN
            size += f" ({row.active_params_b:g}B active)"
        ctx = f"{row.context_length // 1000}k" if row.context_length >= 1000 else str(row.context_length)
        flag = " (local)" if row.local else ""
        mark = f"  [relaxed: {row.relaxed}]" if row.relaxed else ""
        print(f"{rank:>2}. {row.id}{flag}  {size}  ctx {ctx}  {row.license}  [{', '.join(row.tasks)}]{mark}")
        print(f"    {row.why}")
