"""Filters on cards: the explicit ones (``max_params_b=3``, ``license="apache-2.0"``) and the ones query
understanding read from the words. Each filter knows how to say why a card passed it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import SwiftUsageError, did_you_mean, some_choices
from .catalog import FORMATS, MODALITIES, TASKS
from .lexicon import LANGUAGE_NAMES
from .licenses import COMMERCIAL, PERMISSIVE, RESEARCH_ONLY
from .months import month_index
from .phrases import QUANTIZED
from .understanding import Understanding

LICENSE_GROUPS = {"commercial": COMMERCIAL, "permissive": PERMISSIVE, "research-only": RESEARCH_ONLY}


# tiers of relaxable filters: the release window goes first, then constraints (size, format, language,
# license, context, a named family), then the kind of model asked for (inputs, tasks, mixture of experts)
WHEN, CONSTRAINT, KIND = -1, 0, 1


@dataclass(frozen=True)
class Filter:
    """A test on a card, its one-line description for ``why`` and whether it may be relaxed.

    Filters read from the query's words are relaxable (explicit arguments never are): when fewer than
    ``k`` cards pass, the one that removed the most is relaxed and the nearest cards it removed are shown,
    marked. ``distance`` says how far a failing card is from passing (0 when the filter has no measure).
    """

    label: str
    test: Callable[[dict[str, Any]], bool]
    relaxable: bool = False
    relax_order: int = CONSTRAINT
    detail: Callable[[dict[str, Any]], str] | None = None
    distance: Callable[[dict[str, Any]], float] | None = None

    def why(self, card: dict[str, Any]) -> str:
        return self.detail(card) if self.detail else self.label

    def gap(self, card: dict[str, Any]) -> float:
        return self.distance(card) if self.distance else 0.0


def outside(value: float | None, low: float | None, high: float | None) -> float:
    """How far ``value`` lies outside ``[low, high]`` as a log ratio (0 inside, infinite when unknown)."""
    if not value or value <= 0:
        return math.inf
    if low is not None and value < low:
        return math.log(low / value)
    if high is not None and value > high:
        return math.log(value / high)
    return 0.0


def listify(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def _check(values: list[str], allowed: Iterable[str], flag: str) -> list[str]:
    allowed = list(allowed)
    for value in values:
        if value not in allowed:
            raise SwiftUsageError(
                f"--{flag}: unknown value '{value}'{did_you_mean(value, allowed)}; choose from {some_choices(allowed)}"
            )
    return values


def language_code(value: str, known: set[str]) -> str:
    """``"zh"`` / ``"Chinese"`` / ``"中文"`` -> ``"zh"``; unknown names raise one line."""
    text = value.strip().lower()
    if text in known:
        return text
    for code, (english, chinese) in LANGUAGE_NAMES.items():
        if text in english.split() or value.strip() in chinese.split():
            return code
    names = sorted(known | {n for en, _ in LANGUAGE_NAMES.values() for n in en.split()})
    raise SwiftUsageError(
        f"--languages: unknown language '{value}'{did_you_mean(text, names)}; use ISO codes like zh, en"
    )


def _size(card: dict[str, Any]) -> str:
    return f"{card['params_b']:g}B" if card["params_b"] else "size unknown"


def _builds(card: dict[str, Any], wanted: frozenset[str]) -> str:
    have = [x for x in card["formats"] if x in wanted]
    return "builds: " + ", ".join(have) if have else "no " + " or ".join(sorted(wanted)) + " build"


def _active(card: dict[str, Any]) -> str:
    if not card["active_params_b"]:
        return f"dense, {_size(card)}"
    return f"{card['active_params_b']:g}B active of {_size(card)}"


def explicit_filters(
    cards: list[dict[str, Any]],
    *,
    modalities: Any = None,
    tasks: Any = None,
    languages: Any = None,
    license: Any = None,  # noqa: A002 - the column's name
    formats: Any = None,
    min_context: int | None = None,
    family: Any = None,
) -> list[Filter]:
    """Validated filters from keyword arguments (sizes are handled with the understood ones)."""
    out: list[Filter] = []
    for modality in _check([m.lower() for m in listify(modalities)], MODALITIES, "modalities"):
        out.append(Filter(f"{modality} input", lambda c, m=modality: m in c["modalities"]))
    for task in _check([t.lower() for t in listify(tasks)], TASKS, "tasks"):
        out.append(Filter(task, lambda c, t=task: t in c["tasks"]))
    wanted_langs = listify(languages)
    known_langs = {lang for c in cards for lang in c["languages"]} if wanted_langs else set()
    for lang in [language_code(v, known_langs) for v in wanted_langs]:
        out.append(Filter(lang, lambda c, x=lang: x in c["languages"]))
    out += _license_filter(cards, listify(license)) + _format_filter(listify(formats))
    if min_context is not None:
        if min_context < 0:
            raise SwiftUsageError(f"--min-context must be a positive number of tokens, got {min_context}")
        out.append(
            Filter(
                f"context ≥ {min_context:,}",
                lambda c, n=min_context: c["context_length"] >= n,
                detail=lambda c: f"context {c['context_length']:,}",
            )
        )
    return out + _family_filter(cards, listify(family))


def time_filter(u: Understanding) -> Filter | None:
    """The release window read from the query (cards without a release month fail it)."""
    low, high = u.released_from, u.released_until
    if low is None and high is None:
        return None

    def months_outside(card: dict[str, Any]) -> float:
        month = month_index(card["release"])
        if month < 0:
            return math.inf
        return max(0, (low if low is not None else month) - month, month - (high if high is not None else month))

    return Filter(
        u.time_label,
        lambda c: months_outside(c) == 0,
        relaxable=True,
        relax_order=WHEN,
        detail=lambda c: f"released {c['release'] or 'unknown'}",
        distance=lambda c: months_outside(c) / 12,
    )


def _license_filter(cards: list[dict[str, Any]], values: list[str]) -> list[Filter]:
    licenses = [v.lower() for v in values]
    if not licenses:
        return []
    known = sorted({c["license"] for c in cards if c["license"]} | set(LICENSE_GROUPS))
    allowed: set[str] = set()
    for value in _check(licenses, known, "license"):
        allowed |= LICENSE_GROUPS.get(value, {value})
    return [
        Filter(
            "license " + " or ".join(licenses),
            lambda c, a=frozenset(allowed): c["license"] in a,
            detail=lambda c: f"license {c['license']}",
        )
    ]


def _format_filter(values: list[str]) -> list[Filter]:
    wanted = [f.lower() for f in values]
    if not wanted:
        return []
    fset = frozenset(_check(wanted, [*FORMATS, "quantized"], "formats"))
    if "quantized" in fset:
        fset = (fset - {"quantized"}) | QUANTIZED
    return [
        Filter(
            " or ".join(wanted) + " build",
            lambda c, f=fset: bool(f & set(c["formats"])),
            detail=lambda c, f=fset: _builds(c, f),
        )
    ]


def _family_filter(cards: list[dict[str, Any]], values: list[str]) -> list[Filter]:
    fams = [f.lower() for f in values]
    if not fams:
        return []
    known_fams = sorted({c["family"].lower() for c in cards if c["family"]})
    for fam in fams:
        if not any(k.startswith(fam) for k in known_fams):
            stems = sorted({re.match(r"[a-z]*", k).group() for k in known_fams} - {""})  # "qwen" of "qwen2.5"
            hint = did_you_mean(fam, stems + known_fams)
            raise SwiftUsageError(f"--family: no family '{fam}' in the catalog{hint}")
    return [
        Filter(
            "family " + " or ".join(fams),
            lambda c, f=tuple(fams): c["family"].lower().startswith(f),
            detail=lambda c: f"family {c['family']}",
        )
    ]


def _range_label(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g}B-{high:g}B"
    return f"≤ {high:g}B" if high is not None else f"≥ {low:g}B"


def size_filter(u: Understanding) -> Filter | None:
    """The total parameter range (explicit and understood bounds merged in ``u``)."""
    low, high = u.min_params_b, u.max_params_b
    if low is None and high is None:
        return None
    label = _range_label(low, high)
    return Filter(
        label,
        lambda c: outside(c["params_b"], low, high) == 0.0,
        relaxable=not u.explicit_size,
        detail=lambda c: f"{label} ({_size(c)})",
        distance=lambda c: outside(c["params_b"], low, high),
    )


def active_filter(u: Understanding) -> Filter | None:
    """The active parameter range of a mixture of experts (cards without ``active_params_b`` fail it)."""
    low, high = u.min_active_b, u.max_active_b
    if low is None and high is None:
        return None
    label = _range_label(low, high) + " active"
    return Filter(
        label,
        lambda c: outside(c["active_params_b"], low, high) == 0.0,
        relaxable=not u.explicit_active,
        detail=lambda c: f"{label} ({c['active_params_b']:g}B)" if c["active_params_b"] else f"{label} (dense)",
        distance=lambda c: outside(c["active_params_b"], low, high),
    )


def understood_filters(u: Understanding) -> list[Filter]:
    """Filters read from the query words: the kind of model asked for, then its constraints (all relaxable)."""
    return _kind_filters(u) + _constraint_filters(u)


def _kind_filters(u: Understanding) -> list[Filter]:
    out = [Filter(f"{m} input", lambda c, m=m: m in c["modalities"], True, KIND) for m in sorted(u.modalities)]
    if u.moe:
        out.append(
            Filter(
                "mixture of experts",
                lambda c: bool(c["active_params_b"]) and c["active_params_b"] < (c["params_b"] or 0),
                True,
                KIND,
                detail=lambda c: "MoE, " + _active(c) if c["active_params_b"] else "dense",
            )
        )
    if u.speech:
        out.append(
            Filter(
                "speech/audio",
                lambda c: "audio" in c["modalities"] or bool({"asr", "tts"} & set(c["tasks"])),
                True,
                KIND,
                detail=lambda c: "audio input" if "audio" in c["modalities"] else "speech output",
            )
        )
    for group in u.task_groups:
        out.append(Filter(" or ".join(sorted(group)), lambda c, g=group: bool(g & set(c["tasks"])), True, KIND))
    return out


def _constraint_filters(u: Understanding) -> list[Filter]:
    out = [f for f in (time_filter(u), size_filter(u), active_filter(u)) if f is not None]
    out += [Filter(lang, lambda c, x=lang: x in c["languages"], True) for lang in sorted(u.languages)]
    if u.multilingual:
        out.append(
            Filter(
                "multilingual",
                lambda c: len(c["languages"]) >= 5,
                True,
                detail=lambda c: f"{len(c['languages'])} languages",
            )
        )
    if u.licenses is not None or u.excluded_licenses:
        out.append(
            Filter(
                u.license_label or "license",
                lambda c, a=u.licenses, x=u.excluded_licenses: (
                    (a is None or c["license"] in a) and c["license"] not in x
                ),
                True,
                detail=lambda c: f"license {c['license'] or 'unknown'}",
            )
        )
    if u.formats is not None:
        out.append(
            Filter(
                "quantized build" if u.formats == QUANTIZED else " or ".join(sorted(u.formats)) + " build",
                lambda c, f=u.formats: bool(f & set(c["formats"])),
                True,
                detail=lambda c, f=u.formats: _builds(c, f),
            )
        )
    if u.min_context is not None:
        out.append(
            Filter(
                f"context ≥ {u.min_context:,}",
                lambda c, n=u.min_context: c["context_length"] >= n,
                True,
                detail=lambda c: f"context {c['context_length']:,}",
                distance=lambda c, n=u.min_context: outside(c["context_length"], n, None),
            )
        )
    return out
