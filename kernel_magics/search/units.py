"""Sizes and counts as people write them on a command line: "1.5B" parameters, "128k" tokens."""

from __future__ import annotations

import re


def billions(value: object) -> float:
    """``"3"`` / ``"3B"`` / ``"500M"`` -> billions of parameters."""
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bm]?)\s*", str(value).lower())
    if not match:
        raise ValueError(f"expected a size in billions like 3, 1.5B or 500M, got {value!r}")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "m" else number


def token_count(value: object) -> int:
    """``"100000"`` / ``"100k"`` / ``"1M"`` -> tokens."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([km]?)\s*", str(value).lower())
    if not match:
        raise ValueError(f"expected a number of tokens like 32768, 100k or 1M, got {value!r}")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)]
    return int(float(match.group(1)) * scale)
