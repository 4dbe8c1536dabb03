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

from typing import Any

from ..errors import SwiftConfigError, SwiftUsageError
from .commands import MODES
from .entities import EntityIndex
from .filters import Filter, explicit_filters, listify, understood_filters
from .index import build_index
from .ranking import frame_of, newest, rank
from .relax import select
from .sources import all_cards, joined
from .text import tokenize
from .timeframe import catalog_month
from .understand import understand
from .understanding import Understanding
from .units import billions, token_count

__all__ = ["print_results", "search"]

MAX_QUERY_CHARS = 2000
_entity_memo: dict[int, tuple[list[dict[str, Any]], EntityIndex]] = {}


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
            Sizes, input kinds, languages, licenses ("Apache 协议", "commercially usable", "no Llama
            licence"), formats, context lengths and release dates ("before 2024", "2024 年以后", "last 6
            months", relative to the catalog's newest release) in it become filters; "newest" / "最新" sorts
            by release. Empty: the newest models that pass the filters.
        k: how many results. When fewer than ``k`` pass every filter, the understood filter that removed
            the most is relaxed and the nearest cards it removed follow, named in the ``relaxed`` column.
        min_params_b / max_params_b: total parameter range in billions.
        min_active_params_b / max_active_params_b: active parameter range in billions (mixture-of-experts
            models only).
        modalities: inputs the model must accept (text, image, video, audio), all of them.
        tasks: tasks it must do (chat, code, vqa, embedding, asr...), all of them.
        languages: languages it must support (ISO codes or names), all of them.
        license: allowed licenses (any of them); ``"commercial"``, ``"permissive"`` or ``"research-only"``
            for groups (:mod:`kernel_magics.search.licenses`; each row's ``license_verdict`` says what its
            licence allows).
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
    u, mentions = _understood(cards, text, mode, sizes, catalog_month(catalog_cards))
    filters += _mention_filters(mentions) + understood_filters(u)
    settings = {"include_local": include_local, "local_dirs": list(local_dirs or []), "mode": mode}
    settings.update(embedder=embedder, catalog=str(catalog) if catalog else None)
    attrs = _attrs(text, mode, mentions, u, filters, {"k": k, **sizes, **explicit}, settings)
    attrs["refresh"] = refreshed
    selection = select(cards, filters, k)
    attrs["note"] = selection.note
    if selection.empty:
        return frame_of([], attrs)
    index = build_index(catalog_cards, extra, embedder=embedder, dense=mode != "bm25")
    attrs["embedder"] = index.embedder.name if index.embedder else None
    if not text or (not tokenize(text) and not attrs["understood"]):  # nothing but filler words
        return newest(cards, selection, filters, k, attrs)
    return rank(index, cards, selection, text, u, filters, k, mode, attrs)


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
        "time": u.time_attrs(),
        "license": {
            "allowed": sorted(u.licenses) if u.licenses is not None else None,
            "excluded": sorted(u.excluded_licenses),
            "label": u.license_label,
        },
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
    cards: list[dict[str, Any]], text: str, mode: str, sizes: dict[str, float | None], as_of: str
) -> tuple[Understanding, list[Any]]:
    """What the query says (hybrid mode only) with the explicit size bounds merged in, and the names in it."""
    hybrid = bool(text) and mode == "hybrid"
    u = understand(text, as_of) if hybrid else Understanding(query=text, as_of=as_of)
    if sizes["min_params_b"] is not None or sizes["max_params_b"] is not None:
        u.bound_size(sizes["min_params_b"], sizes["max_params_b"], "--min-params-b/--max-params-b")
        u.explicit_size = True
    if sizes["min_active_params_b"] is not None or sizes["max_active_params_b"] is not None:
        source = "--min-active-params-b/--max-active-params-b"
        u.bound_size(sizes["min_active_params_b"], sizes["max_active_params_b"], source, active=True)
        u.explicit_active = True
    names = text
    for phrase in u.name_free:  # "Llama licence", "Qwen 协议": licences, not models
        names = names.replace(phrase, " ")
    return u, (_entities(cards).mentions(names) if hybrid else [])


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


def print_results(frame: Any) -> None:
    """Terminal view of a search result: one line per model, then why it matched; relaxed rows marked."""
    for key in ("refresh", "understood", "note"):
        value = frame.attrs.get(key)
        if value and key == "understood":
            print("understood: " + "; ".join(value))
        elif value:
            print(value)
    shown_relaxed = False
    for place, row in enumerate(frame.itertuples(index=False), 1):
        if row.relaxed and not shown_relaxed:
            print(f"-- relaxed '{row.relaxed}': the nearest models outside it --")
            shown_relaxed = True
        size = f"{row.params_b:g}B" if row.params_b else "?B"
        if row.active_params_b and row.active_params_b == row.active_params_b:  # not NaN
            size += f" ({row.active_params_b:g}B active)"
        ctx = f"{row.context_length // 1000}k" if row.context_length >= 1000 else str(row.context_length)
        flag = " (local)" if row.local else ""
        mark = f"  [relaxed: {row.relaxed}]" if row.relaxed else ""
        licence = f"{row.license or '?'} ({row.license_verdict})"
        print(f"{place:>2}. {row.id}{flag}  {size}  ctx {ctx}  {licence}  [{', '.join(row.tasks)}]{mark}")
        print(f"    {row.why}")
