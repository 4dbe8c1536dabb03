"""Search quality on the packaged catalog: precision@5 of hybrid search over the query set in
``search_queries.py`` (English and Chinese), compared with BM25 alone and dense retrieval alone."""

from __future__ import annotations

import pytest
from search_queries import QUERIES

import kernel_magics as km


def precision_at_5(mode: str, cards: list[dict]) -> tuple[float, list[str]]:
    """Hits whose card has every expected property, over min(5, cards that could qualify)."""
    hits = possible = 0
    misses = []
    for query, properties in QUERIES:
        rows = km.search(query, k=5, mode=mode, include_local=False).to_dict(orient="records")
        good = sum(1 for row in rows if all(p(row) for p in properties))
        could = min(5, sum(1 for card in cards if all(p(card) for p in properties)))
        assert could > 0, f"no card in the catalog fits the expectations of {query!r}"
        hits, possible = hits + good, possible + could
        if good < could:
            misses.append(f"{mode} {good}/{could} {query!r}: {[r['id'] for r in rows]}")
    return hits / possible, misses


@pytest.fixture(scope="module")
def cards(km_cache):
    table = km.catalog(include_local=False)
    assert len(table) >= 300
    return table.to_dict(orient="records")


def test_query_set_size():
    chinese = [q for q, _ in QUERIES if any("\u4e00" <= ch <= "\u9fff" for ch in q)]
    assert len(QUERIES) >= 25 and len(chinese) >= 8


def test_hybrid_precision_beats_bm25_alone(cards):
    hybrid, misses = precision_at_5("hybrid", cards)
    bm25, _ = precision_at_5("bm25", cards)
    dense, _ = precision_at_5("dense", cards)
    print(f"\nprecision@5 over {len(QUERIES)} queries: hybrid {hybrid:.3f}  bm25 {bm25:.3f}  dense {dense:.3f}")
    for line in misses:
        print("  miss:", line)
    assert hybrid >= 0.9, misses
    assert hybrid > bm25 and hybrid > dense
