"""Release months as numbers: ``"2024-06"`` <-> a month count, and a release window in words."""

from __future__ import annotations


def month_index(month: str) -> int:
    """``"2024-06"`` -> a month count (year * 12 + month - 1); ``-1`` when the card has no usable date."""
    if len(month) < 7 or not month[:4].isdigit() or not month[5:7].isdigit():
        return -1
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def window_label(low: int | None, high: int | None) -> str:
    """``released 2024-01 or later`` / ``released 2023-01 to 2023-12`` / ``released 2023-12 or earlier``."""
    if low is not None and high is not None:
        return f"released {month_name(low)} to {month_name(high)}"
    if low is not None:
        return f"released {month_name(low)} or later"
    return f"released {month_name(high)} or earlier" if high is not None else ""
