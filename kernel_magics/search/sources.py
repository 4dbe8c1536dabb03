"""Where search cards come from: the packaged catalog, the Hub cards of the last refresh and the models
found on this machine (``km.catalog`` lists them all)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .catalog import COLUMNS, catalog_cards
from .local import local_cards

_merged: dict[tuple[int, int], tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]]]] = {}
_joined_memo: dict[tuple[int, int], tuple[Any, Any, list[dict[str, Any]]]] = {}


def all_cards(
    catalog: str | os.PathLike[str] | None = None,
    include_local: bool = True,
    local_dirs: Iterable[str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Catalog cards (those found locally marked ``local=True``) and the extra local-only cards."""
    base = catalog_cards(catalog)
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


def joined(catalog_cards: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``catalog_cards + extra``, the same list object while neither changes (keeps memos warm)."""
    if not extra:
        return catalog_cards
    entry = _joined_memo.get((id(catalog_cards), id(extra)))
    if entry is None or entry[0] is not catalog_cards or entry[1] is not extra:
        entry = (catalog_cards, extra, catalog_cards + extra)
        _joined_memo.clear()
        _joined_memo[(id(catalog_cards), id(extra))] = entry
    return entry[2]


def catalog(
    catalog: str | os.PathLike[str] | None = None,
    include_local: bool = True,
    local_dirs: list[str] | None = None,
) -> Any:
    """Every card as a DataFrame (the packaged catalog, Hub cards of the last refresh, local models)."""
    cards, extra = all_cards(catalog, include_local, local_dirs)
    import pandas as pd

    return pd.DataFrame(cards + extra, columns=[*COLUMNS, "local", "path"])
