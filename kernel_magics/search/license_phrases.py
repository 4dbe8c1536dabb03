"""Licences as people ask for them, in English and Chinese: names ("Apache 协议", "BSD licence", "Llama
license") and what the licence must allow ("commercially usable", "可商用", "permissive", "宽松协议").

A phrase with a negation in front ("no Llama licence", "not research-only", "non-commercial", "非 Llama
协议", "不能商用") excludes its licences instead of requiring them. The licence groups come from the
licence table of :mod:`kernel_magics.search.licenses`. Names of model families inside a licence phrase
("Llama", "Qwen", "Gemma") name a licence there, not a model, so the query's name finder skips them.
"""

from __future__ import annotations

import re

from .licenses import COMMERCIAL, LLAMA, PERMISSIVE, RESEARCH_ONLY, TABLE, USE_RESTRICTED, USER_THRESHOLD
from .understanding import Match, Understanding

_WORD = r"(?:\s*(?:licen[cs]ed|licen[cs]es?|terms(?: of use)?|协议|许可证?|许可协议|授权|开源协议|协定))"
_NEG_EN = r"(?:no|not|non|without|excluding|except|avoid|other than|never)(?:[\s-]+(?:an?|the|for|under(?: the| an?)?))?[\s-]+"  # noqa: E501
_NEG_ZH = r"(?:不要|不是|不能|不可以?|不允许|不得|非|排除|不用|别用|不含|除了|除去|没有)\s*(?:用|是|采用)?\s*"


def _ids(*prefixes: str) -> frozenset[str]:
    return frozenset(lic for lic in TABLE if lic.startswith(prefixes))


# (English pattern, Chinese pattern, meaning, licence ids)
NAMES: list[tuple[str, str | None, str, frozenset[str]]] = [
    (rf"apache(?:[- ]?(?:licen[cs]e[- ]?)?(?:v(?:ersion)?\s*)?2(?:\.0)?)?{_WORD}?", r"阿帕奇" + _WORD + "?", "Apache-2.0",
     frozenset({"apache-2.0"})),
    (rf"mit{_WORD}|(?:licen[cs]ed|licen[cs]e)\s+(?:under\s+)?(?:the\s+)?mit|under\s+(?:the\s+)?mit", None, "MIT",
     frozenset({"mit"})),
    (rf"bsd(?:[- ]?[23](?:[- ]clause)?)?{_WORD}?", None, "BSD", _ids("bsd")),
    (rf"cc[- ]by[- ]nc(?:[- ]4\.0)?{_WORD}?", None, "CC-BY-NC", _ids("cc-by-nc")),
    (rf"cc[- ]by[- ]sa(?:[- ][34]\.0)?{_WORD}?", None, "CC-BY-SA", _ids("cc-by-sa")),
    (rf"cc[- ]by(?:[- ]4\.0)?{_WORD}?", None, "CC-BY", frozenset({"cc-by-4.0"})),
    (rf"creative commons{_WORD}?", r"知识共享" + _WORD + "?", "Creative Commons", _ids("cc-")),
    (rf"(?:meta\s+)?llama(?:[- ]?[234](?:\.[0-9])?)?(?:\s*community)?{_WORD}", r"羊驼" + _WORD, "Llama", LLAMA),
    (rf"(?:qwen|tongyi(?: qianwen)?)(?:\s*research){_WORD}", r"(?:通义千问|千问)研究" + _WORD, "Qwen Research",
     frozenset({"qwen-research"})),
    (rf"(?:qwen|tongyi(?: qianwen)?){_WORD}", r"(?:通义千问|千问|通义)" + _WORD, "Qwen", frozenset({"qwen"})),
    (rf"gemma{_WORD}", r"谷歌" + _WORD, "Gemma", frozenset({"gemma"})),
    (rf"deepseek(?:\s*model)?{_WORD}", r"深度求索" + _WORD, "DeepSeek", frozenset({"deepseek"})),
    (rf"falcon(?:[- ]llm)?{_WORD}", r"猎鹰" + _WORD, "Falcon LLM", frozenset({"falcon-llm-license"})),
    (rf"open[- ]?rail(?:[- ]?m|\+\+)?{_WORD}?|rail{_WORD}", None, "OpenRAIL",
     frozenset(lic for lic in TABLE if "rail" in lic)),
    (rf"baichuan{_WORD}", r"百川" + _WORD, "Baichuan", frozenset({"baichuan"})),
    (rf"mistral(?: ai)? (?:research|non-production){_WORD}|mnpl|mrl", None, "Mistral research",
     frozenset({"mistral-research", "mnpl"})),
]  # fmt: skip
# what the licence must allow: (English, Chinese, what it means when asked for, when negated, licence ids)
PROPERTIES: list[tuple[str, str, str, str, frozenset[str]]] = [
    (
        r"commercial(?:ly)?(?:[- ](?:use|usage|usable|use allowed|friendly|ok|okay|products?))?|for business"
        r"|for (?:a |our )?products?|business use|can be used commercially|in (?:a )?products?",
        r"可商用|可以商用|允许商用|免费商用|商用|商业用途|商业使用|商业化|商业",
        "license allows commercial use",
        "license does not allow commercial use",
        COMMERCIAL,
    ),
    (
        rf"permissive(?:ly)?(?:[- ]licen[cs]ed)?{_WORD}?|open[- ]source licen[cs]e|osi[- ]approved{_WORD}?",
        r"宽松的?(?:开源)?" + _WORD + r"?|开源协议|开源许可证?",
        "permissive license (commercial use, no use policy or user limit)",
        "license is not permissive",
        PERMISSIVE,
    ),
    (
        rf"research[- ]only{_WORD}?|research{_WORD}|non[- ]commercial{_WORD}|academic[- ]only{_WORD}?",
        r"仅限研究|仅供研究|研究用途|研究" + _WORD + r"|仅限学术|学术用途|非商业" + _WORD,
        "research-only license",
        "license not research-only",
        RESEARCH_ONLY,
    ),
    (
        r"use[- ]based restrictions?|usage restrictions?|use restrictions?|acceptable use polic(?:y|ies)",
        r"使用限制|用途限制",
        "license with use restrictions",
        "license without use restrictions",
        USE_RESTRICTED,
    ),
    (
        r"user[- ](?:count )?(?:limits?|thresholds?|caps?)|mau (?:limits?|thresholds?|caps?)",
        r"用户数?(?:量)?限制|用户规模限制|用户上限",
        "license with a user-count threshold",
        "license without a user-count threshold",
        USER_THRESHOLD,
    ),
]


def _compile(english: str, chinese: str | None) -> re.Pattern[str]:
    body = f"(?<![a-z0-9])(?:{english})(?![a-z0-9])" + (f"|(?:{chinese})" if chinese else "")
    negation = rf"(?P<neg>(?<![a-z0-9]){_NEG_EN}|{_NEG_ZH})?"
    return re.compile(negation + f"(?:{body})")


_NAME_RULES = [(_compile(en, zh), f"{meaning} license", ids) for en, zh, meaning, ids in NAMES]
_PROPERTY_RULES = [(_compile(en, zh), yes, no, ids) for en, zh, yes, no, ids in PROPERTIES]


def license_matches(query: str, text: str) -> list[Match]:
    """Licence phrases in ``text`` (the lower-cased ``query``), negated ones excluding their licences."""
    out: list[Match] = []
    for pattern, meaning, ids in _NAME_RULES:
        for m in pattern.finditer(text):
            negated = bool(m.group("neg"))
            label = ("not " if negated else "") + meaning
            out.append(Match(m.start(), m.end(), _effect(ids, negated, label), query[m.start() : m.end()]))
    for pattern, yes, no, ids in _PROPERTY_RULES:
        for m in pattern.finditer(text):
            negated = bool(m.group("neg"))
            label = no if negated else yes
            out.append(Match(m.start(), m.end(), _effect(ids, negated, label), query[m.start() : m.end()]))
    return out


def _effect(ids: frozenset[str], negated: bool, label: str):
    def apply(u: Understanding, text: str) -> str:
        u.name_free.append(text)
        if negated:
            u.excluded_licenses |= ids
        else:
            u.licenses = ids if u.licenses is None else (u.licenses & ids) or ids
        u.license_label = f"{u.license_label} and {label}" if u.license_label else label
        return label

    return apply
