"""``km.search`` and ``km.catalog``: find base models by describing them, in English or Chinese.

::

    km.search("small chinese chat model under 3B with a GGUF build", k=5)
    km.search("能看图说话、支持中文对话的视觉问答模型", k=5)
    km.search("code model", k=10, max_params_b=8, license="apache-2.0", formats="gguf")

Ranking is hybrid and explainable: BM25 over bilingual card texts, dense similarity of card sentences
(sentence-transformers) and the structured preferences read by query understanding, fused with
reciprocal rank fusion, after hard filters (explicit arguments and understood phrases such as "under 3B",
"看图", "中文", "GGUF"). Each result says why it matched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import SwiftConfigError, SwiftUsageError
from .catalog import COLUMNS, load_catalog
from .commands import billions, token_count
from .entities import EntityIndex
from .filters import Filter, explicit_filters, listify, size_filter, understood_filters
from .fusion import preference_score, ranks, rrf
from .index import SearchIndex, build_index
from .lexicon import has_cjk, to_english
from .local import local_cards
from .text import tokenize
from .understand import Understanding, understand

MAX_QUERY_CHARS = 2000
MODES = ("hybrid", "bm25", "dense")
RESULT_COLUMNS = (*COLUMNS, "local", "path", "score", "why")
# fusion weights of the three ranked lists; dense similarity below DENSE_FLOOR counts as "no match"
WEIGHTS = {"bm25": 1.0, "dense": 1.0, "prefs": 1.0}
DENSE_FLOOR = 0.5
_joined_memo: dict[tuple[int, int], tuple[Any, Any, list[dict[str, Any]]]] = {}
_entity_memo: dict[int, tuple[list[dict[str, Any]], EntityIndex]] = {}
_merged: dict[tuple[int, int], tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]]]] = {}


def _frame(rows: list[dict[str, Any]], attrs: dict[str, Any]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame.attrs.update(attrs)
    return frame


def all_cards(
    catalog: str | os.PathLike[str] | None = None,
    include_local: bool = True,
    local_dirs: Iterable[str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Catalog cards (those found locally marked ``local=True``) and the extra local-only cards."""
    base = load_catalog(catalog)
    found = local_cards(local_dirs, hub_cache=include_local) if include_local or local_dirs else []
    if not found:
        return base, []
    memo = _merged.get((id(base), id(found)))
    if memo is not None and memo[0] is base and memo[1] is found:
        return memo[2], memo[3]
    by_id = {c["id"]: i for i, c in enumerate(base)}
    cards = list(base)
    extra: list[dict[str, Any]] = []
    seen: set[str] = set(by_id)
    for card in found:
        if card["id"] in by_id:
            i = by_id[card["id"]]
            cards[i] = {**cards[i], "local": True, "path": card["path"]}
            continue
        if card["id"] in seen:
            card = {**card, "id": card["path"]}
        seen.add(card["id"])
        extra.append(card)
    if len(_merged) > 8:
        _merged.clear()
    _merged[(id(base), id(found))] = (base, found, cards, extra)
    return cards, extra


def catalog(
    catalog: str | os.PathLike[str] | None = None,
    include_local: bool = True,
    local_dirs: list[str] | None = None,
) -> Any:
    """Every card as a DataFrame (the packaged catalog plus models found on this machine)."""
    cards, extra = all_cards(catalog, include_local, local_dirs)
    import pandas as pd

    return pd.DataFrame(cards + extra, columns=[*COLUMNS, "local", "path"])


def search(
    query: str | None = None,
    k: int = 10,
    min_params_b: float | None = None,
    max_params_b: float | None = None,
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
) -> Any:
    """Search the model catalog; returns a DataFrame of the best ``k`` cards with ``score`` and ``why``.

    Args:
        query: what you want, in English or Chinese ("small Chinese chat model under 3B with a GGUF
            build", "能看图说话的视觉问答模型"). Sizes, input kinds, languages, licenses, formats and
            context lengths in it become filters. Empty: the newest models that pass the filters.
        k: how many results.
        min_params_b / max_params_b: parameter range in billions (total parameters).
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
    """
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
    min_params_b = _converted(billions, min_params_b, "--min-params-b")
    max_params_b = _converted(billions, max_params_b, "--max-params-b")
    min_context = _converted(token_count, min_context, "--min-context")
    catalog_cards, extra = all_cards(catalog, include_local, local_dirs)
    cards = _joined(catalog_cards, extra)
    filters = explicit_filters(
        cards,
        modalities=modalities,
        tasks=tasks,
        languages=languages,
        license=license,
        formats=formats,
        min_context=min_context,
        family=family,
    )
    u = Understanding(query=text)
    u.bound_size(min_params_b, max_params_b, "--min-params-b/--max-params-b")
    if text and mode == "hybrid":
        parsed = understand(text)
        u = _merge(parsed, min_params_b, max_params_b)
    sized = size_filter(u)
    hard = filters + ([sized] if sized else [])
    soft_hard = understood_filters(u) if mode == "hybrid" else []
    mentions = _entities(cards).mentions(text) if text and mode == "hybrid" else []
    if mentions:
        named = frozenset().union(*(m.ids for m in mentions))
        label = " or ".join(dict.fromkeys(m.label for m in mentions))
        soft_hard.insert(0, Filter(label, lambda c: c["id"] in named, relaxable=True, relax_order=1))
    attrs: dict[str, Any] = {
        "query": text,
        "mode": mode,
        "understood": [f"{m.text} → {m.label}" for m in mentions] + [f"{p.text} → {p.meaning}" for p in u.phrases],
        "filters": [f.label for f in hard + soft_hard],
        "note": "",
        "args": {
            "k": k,
            "min_params_b": min_params_b,
            "max_params_b": max_params_b,
            "modalities": listify(modalities),
            "tasks": listify(tasks),
            "languages": listify(languages),
            "license": listify(license),
            "formats": listify(formats),
            "min_context": min_context,
            "family": listify(family),
        },
        "settings": {
            "include_local": include_local,
            "local_dirs": list(local_dirs or []),
            "mode": mode,
            "embedder": embedder,
            "catalog": str(catalog) if catalog else None,
        },
    }
    need = hard + soft_hard
    candidates = _passing(cards, need)
    relaxable = sorted((f for f in soft_hard if f.relaxable), key=lambda f: f.relax_order)
    dropped: list[Filter] = []
    while not len(candidates) and relaxable:
        dropped.append(relaxable.pop(0))
        need = [f for f in hard + soft_hard if f not in dropped]
        candidates = _passing(cards, need)
    if dropped and len(candidates):
        attrs["note"] = "no model matched every condition; relaxed: " + ", ".join(f.label for f in dropped)
    if not len(candidates):
        attrs["note"] = "no model in the catalog passes " + ", ".join(f.label for f in hard + soft_hard)
        return _frame([], attrs)
    index = build_index(catalog_cards, extra, embedder=embedder, dense=mode != "bm25")
    attrs["embedder"] = index.embedder.name if index.embedder else None
    if not text or (not tokenize(text) and not attrs["understood"]):  # nothing but filler words
        order = sorted(candidates, key=lambda i: (cards[i]["release"], cards[i]["params_b"] or 0), reverse=True)
        if not attrs["note"]:
            attrs["note"] = "no query: the newest models" + (" that pass the filters" if need else "")
        return _frame([_row(cards[i], 0.0, [f.why(cards[i]) for f in need]) for i in order[:k]], attrs)
    return _rank(index, cards, candidates, text, u, need, k, mode, attrs)


def _joined(catalog_cards: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``catalog_cards + extra``, the same list object while neither changes (keeps memos warm)."""
    if not extra:
        return catalog_cards
    entry = _joined_memo.get((id(catalog_cards), id(extra)))
    if entry is None or entry[0] is not catalog_cards or entry[1] is not extra:
        entry = (catalog_cards, extra, catalog_cards + extra)
        _joined_memo.clear()
        _joined_memo[(id(catalog_cards), id(extra))] = entry
    return entry[2]


def _entities(cards: list[dict[str, Any]]) -> EntityIndex:
    entry = _entity_memo.get(id(cards))
    if entry is None or entry[0] is not cards:
        entry = (cards, EntityIndex(cards))
        _entity_memo.clear()
        _entity_memo[id(cards)] = entry
    return entry[1]


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


def _merge(parsed: Understanding, low: float | None, high: float | None) -> Understanding:
    if low is not None or high is not None:
        parsed.bound_size(low, high, "--min-params-b/--max-params-b")
    return parsed


def _passing(cards: list[dict[str, Any]], filters: list[Filter]) -> np.ndarray:
    return np.array([i for i, c in enumerate(cards) if all(f.test(c) for f in filters)], dtype=np.int64)


def _rank(
    index: SearchIndex,
    cards: list[dict[str, Any]],
    candidates: np.ndarray,
    text: str,
    u: Understanding,
    need: list[Filter],
    k: int,
    mode: str,
    attrs: dict[str, Any],
) -> Any:
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
    no_text_match = bm25 is None or float(bm25[candidates].max()) <= 0
    weak_dense = dense is None or float(dense[candidates].max()) < DENSE_FLOOR
    if not u.phrases and not attrs["understood"] and no_text_match and weak_dense:
        attrs["note"] = (
            f"nothing in the catalog matches '{text[:60]}'; describe a task, size or language "
            "(e.g. 'small Chinese chat model under 3B')"
        )
        return _frame([], attrs)
    fused = rrf(lists, candidates)
    if mode == "bm25":  # BM25 alone returns only cards that share a word with the query
        keep = np.array([bm25[i] > 0 for i in candidates], dtype=bool)
        candidates, fused = candidates[keep], fused[keep]
    order = np.argsort(-fused, kind="stable")[:k]
    rows = []
    for pos in order:
        i = int(candidates[pos])
        why = [f.why(cards[i]) for f in need]
        if prefs is not None:
            why += [f"{t} ✓" for t in sorted(u.soft_tasks & set(cards[i]["tasks"]))]
        if bm25 is not None and bm25[i] > 0:
            terms = index.matched_terms(i, query_tokens)
            if terms:
                why.append("terms: " + ", ".join(terms[:8]))
        if dense is not None:
            why.append(f"similarity {float(dense[i]):.2f}")
        rows.append(_row(cards[i], float(fused[pos]), why))
    if not rows and not attrs["note"]:
        attrs["note"] = f"no card shares a word with '{text[:60]}'"
    return _frame(rows, attrs)


def _row(card: dict[str, Any], score: float, why: list[str]) -> dict[str, Any]:
    return {**card, "score": round(score, 5), "why": "; ".join(dict.fromkeys(w for w in why if w))}


def print_results(frame: Any) -> None:
    """Terminal view of a search result: one line per model, then why it matched."""
    note = frame.attrs.get("note")
    understood = frame.attrs.get("understood") or []
    if understood:
        print("understood: " + "; ".join(understood))
    if note:
        print(note)
    for rank, row in enumerate(frame.itertuples(index=False), 1):
        size = f"{row.params_b:g}B" if row.params_b else "?B"
        ctx = f"{row.context_length // 1000}k" if row.context_length >= 1000 else str(row.context_length)
        flag = " (local)" if row.local else ""
        print(f"{rank:>2}. {row.id}{flag}  {size}  ctx {ctx}  {row.license}  [{', '.join(row.tasks)}]")
        print(f"    {row.why}")
