"""Reciprocal rank fusion (Cormack et al., 2009) of several ranked lists, and the structured preference
score that joins BM25 and dense retrieval as a third list."""

from __future__ import annotations

from typing import Any

import numpy as np

from .phrases import QUANTIZED
from .understanding import Understanding

RRF_K = 60


def ranks(scores: np.ndarray, candidates: np.ndarray, positive_only: bool = True) -> dict[int, int]:
    """Rank (1 = best) of each candidate by score; with ``positive_only`` zero scores are not ranked."""
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    out: dict[int, int] = {}
    rank = 0
    previous = None
    for position, idx in enumerate(order, 1):
        value = float(scores[idx])
        if positive_only and value <= 0:
            break
        if value != previous:  # ties share a rank
            rank, previous = position, value
        out[int(idx)] = rank
    return out


def rrf(rankings: list[tuple[dict[int, int], float]], candidates: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Fused score per candidate: the sum of ``weight / (k + rank)`` over the lists that rank it."""
    fused = np.zeros(len(candidates), dtype=np.float64)
    for ranking, weight in rankings:
        for i, idx in enumerate(candidates):
            rank = ranking.get(int(idx))
            if rank is not None:
                fused[i] += weight / (k + rank)
    return fused


def preference_score(card: dict[str, Any], u: Understanding) -> float:
    """How well a card meets the query's soft preferences (0 when there are none)."""
    tasks = set(card["tasks"])
    spread = 1.0 / max(len(tasks), 1)  # a specialist beats a generalist for the asked task
    score = 0.0
    for task in u.soft_tasks:
        if task in tasks:
            score += 1.0 + spread
    for group in u.task_groups:
        if group & tasks:
            score += spread
    formats = set(card["formats"])
    if u.soft_formats and formats & u.soft_formats:
        score += 0.5
    if u.formats is not None:
        score += 0.1 * len(formats & QUANTIZED)
    params = card["params_b"] or 0.0
    if u.prefer_small and params:
        score += 0.4 * (1.0 - min(params, 8.0) / 8.0)
    if u.prefer_recent and card["release"][:4].isdigit():
        score += 0.6 * max(0, int(card["release"][:4]) - 2019) / 6
    return score
