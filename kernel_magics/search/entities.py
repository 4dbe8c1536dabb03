"""Model names in a query: families ("llama 3.1", "Qwen2-VL", "gemma 2"), makers ("microsoft", "智谱").

A named family or maker narrows the search to its cards (a filter that is relaxed when nothing else
passes). Families are matched on their normalised names, so "llama 3.1" finds ``llama3.1``, "qwen 2.5"
finds the ``qwen2.5`` series (qwen2.5-coder, qwen2.5-vl...), and a bare base name ("qwen", "gemma")
finds every version. Chinese maker names come from the cards' aliases (智谱, 通义千问, 深度求索...).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

# Chinese aliases that name a maker or a model series (the others describe tasks or traits)
BRAND_ALIASES = frozenset(
    "百川 网易有道 智源 深度求索 猎鹰 浦语 面壁 微软 零一万物 羊驼 书生 智谱 清华 谷歌 通义千问 千问 通义 阿里 米斯特拉尔 "
    "元象 月之暗面 商汤 讯飞 腾讯 混元 百度 文心 字节 豆包".split()
)
# base names too generic to read as a family in running text
_GENERIC = frozenset(
    {"opt", "gpt", "command", "orca", "tower", "solar", "bert", "distil", "wav", "mms", "xlm", "got", "open", "cross",
     "sentence", "bloom", "clip"}
)  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)*")


@dataclass(frozen=True)
class Mention:
    """A name found in the query and the cards it refers to."""

    text: str
    label: str
    ids: frozenset[str]


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9\-]", "", name.lower().replace("_", "-"))


class EntityIndex:
    """Family, maker and brand names of a card list."""

    def __init__(self, cards: list[dict[str, Any]]) -> None:
        self.families: dict[str, set[str]] = {}
        self.bases: dict[str, set[str]] = {}
        self.owners: dict[str, set[str]] = {}
        self.brands: dict[str, set[str]] = {}
        self._exact: dict[str, set[str]] | None = None  # family name (with or without dashes) -> card ids
        self._sorted: list[str] = []
        for card in cards:
            family = _key(card.get("family", ""))
            if family:
                self.families.setdefault(family, set()).add(card["id"])
                base = re.match(r"[a-z]+", family)
                if base and len(base.group(0)) >= 3 and base.group(0) not in _GENERIC:
                    self.bases.setdefault(base.group(0), set()).add(card["id"])
            if "/" in card["id"]:
                owner = _key(card["id"].split("/")[0])
                for name in {owner, owner.split("-")[0]}:
                    if len(name) >= 4 and name not in _GENERIC:
                        self.owners.setdefault(name, set()).add(card["id"])
            for alias in card.get("aliases", []):
                if alias in BRAND_ALIASES:
                    self.brands.setdefault(alias, set()).add(card["id"])

    def _family_ids(self, key: str) -> set[str]:
        """Cards of family ``key`` (also written without dashes) and, for a versioned key, of its series."""
        if self._exact is None:
            self._exact = {}
            for family, members in self.families.items():
                for name in {family, family.replace("-", "")}:
                    self._exact.setdefault(name, set()).update(members)
            self._sorted = sorted(self.families)
        ids = set(self._exact.get(key, ()))
        if any(ch.isdigit() for ch in key):  # qwen2.5 -> qwen2.5-coder, qwen2.5-vl...
            prefix = key + "-"
            i = bisect.bisect_left(self._sorted, prefix)
            while i < len(self._sorted) and self._sorted[i].startswith(prefix):
                ids |= self.families[self._sorted[i]]
                i += 1
        return ids

    def mentions(self, query: str) -> list[Mention]:
        """Names in ``query``; the longest match wins where names overlap."""
        text = query.lower()
        words = [(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(text)]
        found: list[Mention] = []
        used: set[int] = set()
        for n in (3, 2, 1):
            for i in range(len(words) - n + 1):
                span = range(i, i + n)
                if used & set(span):
                    continue
                parts = [w[2] for w in words[i : i + n]]
                between = text[words[i][1] : words[i + n - 1][0]] if n > 1 else ""
                if n > 1 and not re.fullmatch(r"[\s\-_.]*", between):
                    continue
                joined = "".join(parts).replace(".", "")
                dashed = "-".join(parts).replace(".", "")
                ids: set[str] = set()
                label = ""
                for key in dict.fromkeys((dashed, joined)):
                    ids = self._family_ids(key)
                    if ids:
                        label = f"family {key}"
                        break
                if n == 1 and joined in self.bases:  # "qwen": every qwen family, not only the one called qwen
                    ids, label = ids | self.bases[joined], f"{joined} models"
                elif not ids and n == 1 and joined in self.owners:
                    ids, label = self.owners[joined], f"made by {joined}"
                if ids:
                    used |= set(span)
                    found.append(Mention(query[words[i][0] : words[i + n - 1][1]], label, frozenset(ids)))
        for alias, ids in self.brands.items():
            if alias in query:
                found.append(Mention(alias, f"{alias} models", frozenset(ids)))
        return found
