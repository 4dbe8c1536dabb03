"""Sizes and context lengths written as numbers: "under 3B", "1-3b", "70亿", "128k context", "A3B".

A size phrase bounds the total parameters (``params_b``) unless the words around it say *active*
("fewer than 5B active parameters", "3B activated", "激活参数少于5B", "5B激活") or it is a mixture-of-experts
name such as ``A3B`` / ``a2.7b`` (about that many active parameters): those bound ``active_params_b`` and
ask for a mixture-of-experts model. "total" / "总参数" next to a size keeps it on the total.
"""

from __future__ import annotations

import re
from typing import Any

from .understanding import Match, Understanding

_NUM = r"(\d+(?:\.\d+)?)"
_UNIT = r"\s*(b|bn|billion|m|million|亿)(?![a-z0-9])"
_CTX_WORDS = r"(?:\s*(?:tokens?|context(?:\s*window)?|ctx|上下文|token|窗口))"
_AT_MOST = (
    r"under|below|less than|fewer than|lower than|smaller than|at most|up to|no more than|not more than"
    r"|no larger than|max(?:imum)?|within|<=|<|≤|不超过|小于|低于|不到|少于|不大于|不高于"
)
_AT_LEAST = r"over|above|more than|larger than|bigger than|at least|min(?:imum)?|>=|>|≥|大于|超过|不少于|至少|高于"
SIZE_PATTERNS = [
    # (regex, kind)
    (re.compile(rf"(?<![a-z0-9.\-])(?:between\s*)?{_NUM}\s*(b|m)?\s*(?:-|~|～|to|and|到|至)\s*{_NUM}{_UNIT}"), "range"),
    (re.compile(rf"(?:{_AT_MOST})\s*{_NUM}{_UNIT}"), "max"),
    (
        re.compile(rf"(?<![a-z0-9.]){_NUM}{_UNIT}\s*(?:or (?:less|smaller|under|below|fewer)|以下|以内|及以下|之内)"),
        "max",
    ),
    (re.compile(rf"(?:{_AT_LEAST})\s*{_NUM}{_UNIT}"), "min"),
    (re.compile(rf"(?<![a-z0-9.]){_NUM}{_UNIT}\s*(?:\+|or (?:more|larger|bigger|above)|以上|及以上)"), "min"),
    (re.compile(r"(?<![a-z0-9.])a(\d+(?:\.\d+)?)(b|m)(?![a-z0-9])"), "moe-name"),  # Qwen3-30B-A3B, A2.7B
    (re.compile(rf"(?<![a-z0-9.]){_NUM}{_UNIT}"), "about"),
]
CONTEXT_PATTERNS = [
    (re.compile(rf"(?<![a-z0-9.]){_NUM}\s*k(?![a-z0-9]){_CTX_WORDS}?"), 1_000),
    (re.compile(rf"(?<![a-z0-9.]){_NUM}\s*(?:m|million){_CTX_WORDS}"), 1_000_000),
    (re.compile(rf"(?<![a-z0-9.]){_NUM}{_CTX_WORDS}"), 1),
    (re.compile(r"百万(?:级)?上下文|million[- ]token"), -1_000_000),
]
# words right after a size ("5B active parameters", "3B激活") or right before it ("激活参数少于5B")
_ACTIVE_AFTER = re.compile(
    r"\s*(?:active|activated|activation)(?:\s*(?:parameters?|params?|weights?))?(?![a-z])|\s*(?:激活参数量?|激活)"
)
_ACTIVE_BEFORE = re.compile(
    r"(?:(?:active|activated)\s*(?:parameters?|params?|weights?)|激活参数量?|激活量)\s*(?:of|:|=|为|是|在)?\s*$"
)
_TOTAL_AFTER = re.compile(
    r"\s*(?:total|in total|overall)(?:\s*(?:parameters?|params?|weights?))?(?![a-z])|\s*总参数量?"
)
_TOTAL_BEFORE = re.compile(r"(?:total\s*(?:parameters?|params?|size)|总参数量?)\s*(?:of|:|=|为|是|在)?\s*$")


def billions(number: str, unit: str | None) -> float:
    value = float(number)
    if unit in ("m", "million"):
        return value / 1000
    if unit == "亿":
        return value / 10
    return value


def _b(value: float) -> str:
    return f"{value:g}B"


def context_matches(query: str, text: str) -> list[Match]:
    """Context lengths in ``text`` (the lower-cased ``query``)."""
    out: list[Match] = []
    for pattern, scale in CONTEXT_PATTERNS:
        for m in pattern.finditer(text):
            tokens = int(float(m.group(1)) * scale) if scale > 0 else -scale
            if tokens >= 512:
                out.append(Match(m.start(), m.end(), _context_effect(tokens), query[m.start() : m.end()]))
    return out


def size_matches(query: str, text: str) -> list[Match]:
    """Parameter sizes in ``text``, each bound to the total or the active parameters by its neighbours."""
    out: list[Match] = []
    for pattern, kind in SIZE_PATTERNS:
        for m in pattern.finditer(text):
            start, end, which = _which_count(text, m.start(), m.end(), kind)
            out.append(Match(start, end, _size_effect(m.groups(), kind, which), query[start:end]))
    return out


def _which_count(text: str, start: int, end: int, kind: str) -> tuple[int, int, str]:
    """``"active"`` or ``"total"`` for a size phrase, and the phrase's span widened over those words."""
    if kind == "moe-name":
        return start, end, "active"
    for after, which in ((_ACTIVE_AFTER, "active"), (_TOTAL_AFTER, "total")):
        m = after.match(text, end)
        if m:
            return start, m.end(), which
    window = text[max(0, start - 30) : start]
    for before, which in ((_ACTIVE_BEFORE, "active"), (_TOTAL_BEFORE, "total")):
        m = before.search(window)
        if m:
            return start - (len(window) - m.start()), end, which
    return start, end, "params"


def _context_effect(tokens: int):
    def apply(u: Understanding, text: str) -> str:
        u.min_context = max(u.min_context or 0, tokens)
        return f"context ≥ {tokens:,} tokens"

    return apply


def _size_effect(groups: tuple[Any, ...], kind: str, which: str):
    active = which == "active"
    noun = "active parameters (MoE)" if active else "total parameters"

    def apply(u: Understanding, text: str) -> str:
        label = f"'{text.strip()}'"
        low, high, words = _bounds(groups, kind)
        u.bound_size(low, high, label, active=active)
        if active:
            u.moe = True
        return f"{words} {noun}"

    return apply


def _bounds(groups: tuple[Any, ...], kind: str) -> tuple[float | None, float | None, str]:
    """The range a size phrase stands for, and how to say it."""
    if kind == "range":
        low = billions(groups[0], groups[1] or groups[3])
        high = billions(groups[2], groups[3])
        low, high = min(low, high), max(low, high)
        return low, high, f"{_b(low)} to {_b(high)}"
    value = billions(groups[0], groups[1])
    if kind == "max":
        return None, value, f"at most {_b(value)}"
    if kind == "min":
        return value, None, f"at least {_b(value)}"
    low, high = round(value * 0.8, 3), round(value * 1.25, 3)
    return low, high, f"about {_b(value)} ({_b(low)}-{_b(high)})"
