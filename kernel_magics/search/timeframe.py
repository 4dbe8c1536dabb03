"""When a model came out: "in 2023", "2023-2024", "before 2024", "2024 年以后", "last 6 months", "近一年", "newest".

Cards carry their release month (``release``, ``YYYY-MM``). A time phrase becomes an inclusive month range
``[since, until]`` on it; relative phrases ("this year", "last 6 months", "近一年", "去年") count back from
the catalog's date, the newest release month among its cards (the packaged catalog's refresh, moved
forward by ``km.refresh_catalog()``), never from the machine's clock, so the same catalog answers a
query the same way on any day. "newest" / "latest" / "最新" sort the results by release, newest first.
"2024 年以后" / "之后" include 2024 (as such a query is usually meant); "after 2024" starts in 2025.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .months import month_index, month_name, window_label
from .understanding import Match, Understanding

_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_MONTH_NAME = r"(?P<mname>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"  # noqa: E501
_YEAR = r"(?<![0-9.])(?P<year>(?:19|20)\d\d)(?![0-9])"
# a year, optionally with its month: 2024, 2024-06, 2024年6月, june 2024
_DATE = rf"(?:(?:{_MONTH_NAME}\.?\s+)?{_YEAR}(?:\s*(?:[-/.](?P<mnum>0?[1-9]|1[0-2])(?![0-9])|年\s*(?P<mzh>0?[1-9]|1[0-2])\s*月|\s*年)?))"
_NOT_A_YEAR = re.compile(r"\s*(?:k\b|tokens?|token|b\b|m\b|params?|parameters?|上下文|亿)")
_ZH_NUM = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
           "十二": 12, "半": 0.5}  # fmt: skip
_EN_NUM = {"one": 1, "two": 2, "three": 3, "four": 4, "six": 6, "nine": 9, "twelve": 12, "eighteen": 18, "a": 1}
_COUNT = r"(?P<n>\d+|one|two|three|four|six|nine|twelve|eighteen|a|十二|[一两二三四五六七八九十半])"

# (pattern, kind) — kind says how the date or count in the phrase bounds the release month
ABSOLUTE = [
    (rf"(?:between|from)\s+{_DATE}\s*(?:and|to|-|–|~)\s*(?P<year2>(?:19|20)\d\d)(?![0-9])", "range"),
    (rf"{_DATE}\s*(?:-|–|~|to|到|至)\s*(?P<year2>(?:19|20)\d\d)(?![0-9])\s*年?", "range"),
    (rf"{_DATE}\s*(?:or|and|或|和|、|/)\s*(?P<year2>(?:19|20)\d\d)(?![0-9])\s*年?", "range"),
    (rf"(?:(?P<half>first|second|1st|2nd) half of|h(?P<hnum>[12]))\s+{_DATE}", "half"),
    (rf"{_DATE}\s*(?:(?P<zhhalf>上|下)半年|h(?P<hnum2>[12]))", "half"),
    (rf"q(?P<quarter>[1-4])\s+{_DATE}", "quarter"),
    (rf"{_DATE}\s*(?:q(?P<quarter2>[1-4])|第(?P<zhquarter>[一二三四1-4])季度?)", "quarter"),
    (
        rf"(?:since|after|later than|newer than|post-?|from)\s+{_DATE}"
        r"\s*(?:on(?:wards?)?|and (?:later|after)|or (?:later|newer))",
        "since",
    ),
    (rf"(?:since|starting|starting from|starting in)\s+{_DATE}", "since"),
    (
        rf"{_DATE}\s*(?:onwards?|or (?:later|newer)|and (?:later|newer|after)|\+|及以后|以后|之后|以来|起|开始|后)",
        "since",
    ),
    (rf"(?:after|later than|newer than|post-?)\s*{_DATE}", "after"),
    (rf"(?:before|earlier than|older than|prior to|pre-?)\s*{_DATE}", "before"),
    (rf"{_DATE}\s*(?:以前|之前|前)", "before"),
    (rf"(?:until|up to|through|by|no later than|不晚于)\s*{_DATE}", "until"),
    (rf"{_DATE}\s*(?:or (?:earlier|older)|and (?:earlier|before)|及以前|及之前)", "until"),
    (rf"(?:(?:released|published|came out|from|in|of)\s+)?{_DATE}(?:\s*(?:发布|推出|出的|release))?", "in"),
]
RELATIVE = [
    (r"this year|今年|本年度?", "this-year"),
    (r"(?<!the )(?<!past )last year|去年|上一年", "last-year"),
    (rf"(?:the |within (?:the )?)?(?:last|past)\s+{_COUNT}\s*years?", "years"),
    (rf"(?:近|最近|过去|这)\s*{_COUNT}\s*年", "years"),
    (rf"{_COUNT}\s*年(?:内|以内|之内)", "years"),
    (r"(?:the |within (?:the )?)(?:last|past) year|past year|(?:last|past) 12 months", "year"),
    (rf"(?:the |within (?:the )?)?(?:last|past)\s+{_COUNT}\s*months?", "months"),
    (rf"(?:近|最近|过去)\s*{_COUNT}\s*个?月", "months"),
    (rf"{_COUNT}\s*个?月(?:内|以内|之内)", "months"),
    (r"(?:the )?(?:last|past) half[- ]year|(?:近|最近|过去)半年|半年(?:内|以内|之内)", "half-year"),
]
SORT = re.compile(
    r"(?<![a-z0-9])(?:newest|latest|most recent(?:ly released)?|newest first|sorted by (?:release )?date"
    r"|sort(?:ed)? by release|by release date|recently released|newly released|new releases?)(?![a-z0-9])"
    r"|最新(?:发布|推出|的)?|按(?:发布)?时间排序|新出|(?:最近|近期|刚刚?|新)发布"
)


def catalog_month(cards: Iterable[dict[str, Any]]) -> str:
    """The catalog's date: its newest release month (relative phrases count back from it)."""
    newest = max((month_index(c.get("release") or "") for c in cards), default=-1)
    return month_name(newest) if newest >= 0 else ""


def time_matches(query: str, text: str, as_of: str) -> list[Match]:
    """Time phrases in ``text`` (the lower-cased ``query``), relative ones resolved against ``as_of``."""
    out: list[Match] = []
    for pattern, kind in _ABSOLUTE:
        for m in pattern.finditer(text):
            if _NOT_A_YEAR.match(text, m.end()):
                continue  # "2048 tokens", "2024b": not a year
            low, high = _absolute(m, kind)
            out.append(Match(m.start(), m.end(), _window_effect(low, high, ""), query[m.start() : m.end()]))
    now = month_index(as_of)
    if now >= 0:
        for pattern, kind in _RELATIVE:
            for m in pattern.finditer(text):
                low, high = _relative(m, kind, now)
                effect = _window_effect(low, high, as_of)
                out.append(Match(m.start(), m.end(), effect, query[m.start() : m.end()]))
    for m in SORT.finditer(text):
        out.append(Match(m.start(), m.end(), _sort_effect(as_of), query[m.start() : m.end()]))
    return out


_ABSOLUTE = [(re.compile(rf"(?<![a-z0-9])(?:{p})"), kind) for p, kind in ABSOLUTE]
_RELATIVE = [(re.compile(rf"(?<![a-z0-9])(?:{p})(?![a-z0-9])"), kind) for p, kind in RELATIVE]


def _month_of(m: re.Match[str]) -> int | None:
    if m.group("mname"):
        return _MONTHS.index(m.group("mname")[:3]) + 1
    number = m.group("mnum") or m.group("mzh")
    return int(number) if number else None


def _absolute(m: re.Match[str], kind: str) -> tuple[int | None, int | None]:
    year, month = int(m.group("year")), _month_of(m)
    first = year * 12 + (month - 1 if month else 0)
    last = year * 12 + (month - 1 if month else 11)
    if kind == "range":
        return first, int(m.group("year2")) * 12 + 11
    if kind == "quarter":
        got = m.groupdict()
        number = got.get("quarter") or got.get("quarter2") or got.get("zhquarter") or "1"
        start = year * 12 + 3 * ("一二三四".find(number) if number in "一二三四" else int(number) - 1)
        return start, start + 2
    if kind == "half":
        got = m.groupdict()
        second = got.get("half") in ("second", "2nd") or got.get("zhhalf") == "下"
        second = second or "2" in (got.get("hnum") or got.get("hnum2") or "")
        start = year * 12 + (6 if second else 0)
        return start, start + 5
    if kind == "since":
        return first, None
    if kind == "after":
        return last + 1, None
    if kind == "before":
        return None, first - 1
    if kind == "until":
        return None, last
    return first, last


def _count(m: re.Match[str]) -> float:
    word = m.group("n")
    if word.isdigit():
        return float(word)
    return float(_EN_NUM.get(word) or _ZH_NUM[word])


def _relative(m: re.Match[str], kind: str, now: int) -> tuple[int | None, int | None]:
    if kind == "this-year":
        return now - now % 12, None
    if kind == "last-year":
        start = now - now % 12 - 12
        return start, start + 11
    months = {"year": 12, "half-year": 6}.get(kind)
    if months is None:
        months = round(_count(m) * (12 if kind == "years" else 1))
    return now - max(months, 1) + 1, None


def _window_effect(low: int | None, high: int | None, as_of: str):
    def apply(u: Understanding, text: str) -> str:
        u.bound_time(low, high, f"'{text.strip()}'")
        return window_label(low, high) + (f" (catalog as of {as_of})" if as_of else "")

    return apply


def _sort_effect(as_of: str):
    def apply(u: Understanding, text: str) -> str:
        u.sort_recent = True
        return "newest first" + (f" (catalog as of {as_of})" if as_of else "")

    return apply
