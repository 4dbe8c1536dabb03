"""What the side-by-side benchmarks share: rounds in which every side runs once, the side that goes first
changing from round to round, and tables of the mean and median of each side and of the per-round ratios.

Imported by the scripts in this folder (``python benchmarks/x.py`` puts the folder on ``sys.path``); not a
benchmark itself (the leading underscore keeps it out of ``make bench`` and the smoke test).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def order_of_round(sides: Sequence[str], round_index: int) -> list[str]:
    """``sides`` rotated by ``round_index``: with two sides, A B, then B A, then A B ..."""
    shift = round_index % len(sides)
    return list(sides[shift:]) + list(sides[:shift])


def run_rounds(
    sides: dict[str, Callable[[int], dict[str, float]]], rounds: int, pause_s: float = 0.2, echo: bool = True
) -> dict[str, list[dict[str, float]]]:
    """Call every side once per round (``side(round_index)`` returns its figures), alternating the order."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for index in range(rounds):
        for name in order_of_round(list(sides), index):
            results[name].append(sides[name](index))
            time.sleep(pause_s)
        if echo:
            line = ", ".join(f"{name} {_brief(results[name][-1])}" for name in sides)
            first = order_of_round(list(sides), index)[0]
            print(f"round {index + 1}/{rounds} ({first} first): {line}", flush=True)
    return results


def _brief(figures: dict[str, float]) -> str:
    return " ".join(f"{key}={value:.4g}" for key, value in figures.items())


def mean_median(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.median(values)


def print_sides(results: dict[str, list[dict[str, float]]], metrics: dict[str, str], width: int = 28) -> None:
    """One line per side: ``mean / median`` of each metric (``metrics``: key -> column title)."""
    print(f"{'':{width}}" + "".join(f"{title + ' mean / median':>34}" for title in metrics.values()))
    for name, runs in results.items():
        cells = []
        for key in metrics:
            mean, median = mean_median([run[key] for run in runs])
            cells.append(f"{mean:>15.4g} / {median:<15.4g}")
        print(f"{name:{width}}" + "".join(f"{cell:>34}" for cell in cells))


def print_ratio(
    label: str, numerator: Sequence[float], denominator: Sequence[float], target: str = ""
) -> tuple[float, float]:
    """Per-round ratios numerator / denominator, their mean and median; returns (mean, median)."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    mean, median = mean_median(ratios)
    rounds = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"{label}: mean {mean:.3f}, median {median:.3f}{'  ' + target if target else ''}  (rounds: {rounds})")
    return mean, median
