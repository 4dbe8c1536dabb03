"""Search test data: English / Chinese twin queries about release dates, licences and the earlier kinds.

``TWINS``: (constraint kind, English query, the same query in Chinese, properties every top-5 hit must
have). Both queries of a pair ask for the same thing, so they should return the same top 5; used by
``tests/test_search_twins.py`` (precision@5 per language and per kind, top-5 agreement) and
``benchmarks/search.py``. ``SHORT``: twin queries that no card satisfies fully (a relaxed answer is due).
Properties are the helpers of ``search_queries.py`` plus release windows, licence groups and
``newest_among`` (the hit is among the newest cards that have the other properties).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from search_queries import Card, context_at_least, fmt, image, lang, size_at_most, size_between, task, zh

from kernel_magics.search.licenses import COMMERCIAL, LLAMA, PERMISSIVE, RESEARCH_ONLY, USE_RESTRICTED


def released(first: str, last: str = "9999-12") -> Callable[[Card], bool]:
    return lambda c: first <= c["release"] <= last


def license_in_group(group: frozenset[str]) -> Callable[[Card], bool]:
    return lambda c: c["license"] in group


def license_not_in(group: frozenset[str]) -> Callable[[Card], bool]:
    return lambda c: c["license"] not in group


def multilingual(c: Card) -> bool:
    return len(c["languages"]) >= 5


@cache
def _packaged() -> tuple[Card, ...]:
    from kernel_magics.search.catalog import load_catalog

    return tuple(load_catalog())


def newest_among(*properties: Callable[[Card], bool], top: int = 5) -> Callable[[Card], bool]:
    """The hit was released no earlier than the ``top``-th newest packaged card having ``properties``."""

    @cache
    def threshold() -> str:
        months = sorted((c["release"] for c in _packaged() if all(p(c) for p in properties)), reverse=True)
        return months[min(top, len(months)) - 1]

    return lambda c: c["release"] >= threshold()


TIME_ABSOLUTE, TIME_RELATIVE, NEWEST = "time: absolute", "time: relative", "time: newest first"
LICENSE_NAME, LICENSE_WHAT, LICENSE_NOT = "licence: name", "licence: what it allows", "licence: negated"
BOTH, OTHER = "time + licence", "size/task/language/format"

TWINS: list[tuple[str, str, str, list[Callable[[Card], bool]]]] = [
    (TIME_ABSOLUTE, "speech recognition model released in 2023", "2023年发布的语音识别模型",
     [task("asr"), released("2023-01", "2023-12")]),
    (TIME_ABSOLUTE, "Chinese embedding model from 2024 or later", "2024年及以后的中文向量模型",
     [task("embedding"), zh, released("2024-01")]),
    (TIME_ABSOLUTE, "code model released before 2024", "2024年之前发布的代码模型",
     [task("code"), released("0000-00", "2023-12")]),
    (TIME_ABSOLUTE, "vision-language model from 2023 to 2024", "2023到2024年的视觉语言模型",
     [image, released("2023-01", "2024-12")]),
    (TIME_ABSOLUTE, "math model since June 2024", "2024年6月以后的数学模型", [task("math"), released("2024-06")]),
    (TIME_RELATIVE, "reasoning model from this year", "今年发布的推理模型", [task("reasoning"), released("2025-01")]),
    (TIME_RELATIVE, "small chat model from the last 6 months", "近6个月发布的小型对话模型",
     [size_at_most(4), task("chat"), released("2024-11")]),
    (TIME_RELATIVE, "OCR model from the past year", "近一年的文字识别模型", [task("ocr"), released("2024-05")]),
    (TIME_RELATIVE, "translation model from last year", "去年发布的翻译模型",
     [task("translation"), released("2024-01", "2024-12")]),
    (NEWEST, "newest multilingual embedding model", "最新的多语言向量模型",
     [task("embedding"), multilingual, newest_among(task("embedding"), multilingual)]),
    (NEWEST, "latest vision model under 10B", "最新的10B以下视觉模型",
     [image, size_at_most(10), newest_among(image, size_at_most(10))]),
    (NEWEST, "newest Japanese chat model", "最新的日语对话模型",
     [lang("ja"), task("chat"), newest_among(lang("ja"))]),
    (LICENSE_NAME, "Apache-licensed Chinese chat model under 8B", "Apache 协议、8B以下的中文对话模型",
     [license_in_group(frozenset({"apache-2.0"})), zh, size_at_most(8), task("chat")]),
    (LICENSE_NAME, "speech recognition model under the MIT license", "MIT 协议的语音识别模型",
     [license_in_group(frozenset({"mit"})), task("asr")]),
    (LICENSE_NAME, "image captioning model with a BSD license", "BSD 许可的图像描述模型",
     [license_in_group(frozenset({"bsd-3-clause", "bsd-2-clause"})), task("caption")]),
    (LICENSE_NAME, "multimodal model with a Gemma licence", "Gemma 协议的多模态模型",
     [license_in_group(frozenset({"gemma"})), image]),
    (LICENSE_WHAT, "commercially usable OCR model for documents", "可商用的文档 OCR 模型",
     [license_in_group(COMMERCIAL), task("ocr")]),
    (LICENSE_WHAT, "permissively licensed vision model", "宽松协议的视觉模型", [license_in_group(PERMISSIVE), image]),
    (LICENSE_WHAT, "translation model I can use commercially", "可以商用的翻译模型",
     [license_in_group(COMMERCIAL), task("translation")]),
    (LICENSE_NOT, "code model without a research-only licence", "不是仅限研究许可的代码模型",
     [license_not_in(RESEARCH_ONLY), task("code")]),
    (LICENSE_NOT, "chat model under 10B, no Llama licence", "10B以下、非 Llama 协议的对话模型",
     [license_not_in(LLAMA), size_at_most(10), task("chat")]),
    (LICENSE_NOT, "multilingual chat model without use restrictions", "没有使用限制的多语言对话模型",
     [license_not_in(USE_RESTRICTED), multilingual, task("chat")]),
    (BOTH, "commercially usable Chinese model released in 2025", "2025年发布的可商用中文模型",
     [license_in_group(COMMERCIAL), zh, released("2025-01")]),
    (BOTH, "newest permissive code model", "最新的宽松协议代码模型",
     [license_in_group(PERMISSIVE), task("code"), newest_among(license_in_group(PERMISSIVE), task("code"))]),
    (BOTH, "Apache 2.0 vision model from the last year", "近一年 Apache 协议的视觉模型",
     [license_in_group(frozenset({"apache-2.0"})), image, released("2024-05")]),
    (OTHER, "small Japanese chat model", "日语对话小模型", [lang("ja"), size_at_most(4)]),
    (OTHER, "long-context model for legal documents", "用于法律文档的长上下文模型", [context_at_least(100_000)]),
    (OTHER, "text to speech model that supports Chinese", "支持中文的语音合成模型", [task("tts"), zh]),
    (OTHER, "14B model with an AWQ build", "有 AWQ 版本的 14B 模型", [fmt("awq"), size_between(11.2, 17.5)]),
    (OTHER, "object detection grounding model", "目标检测定位模型", [task("grounding"), image]),
    (OTHER, "function-calling model under 10B", "10B以下支持工具调用的模型",
     [task("function-calling"), size_at_most(10)]),
]  # fmt: skip

# no card has every property: the answer must be relaxed, with its reason
SHORT: list[tuple[str, str]] = [
    ("commercially usable text to speech model for Chinese", "可商用的中文语音合成模型"),
    ("BSD licensed speech recognition model from 2025", "2025年发布的 BSD 协议语音识别模型"),
    ("reranker released before 2020", "2020年之前发布的重排序模型"),
]
