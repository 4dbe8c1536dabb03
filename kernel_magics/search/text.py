"""Card texts and the bilingual tokenizer shared by the BM25 and dense channels.

``card_text`` writes a card out in English *and* Chinese (tasks, inputs, languages, sizes, aliases) for
BM25; ``card_sentence`` is the English sentence the dense embedder sees. ``tokenize`` lower-cases Latin
words (keeping ids such as ``qwen2.5`` and ``7b`` whole and adding their parts) and cuts Chinese with
jieba, whose dictionary learns the lexicon's words (看图说话, 长上下文...) and the cards' aliases.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from .lexicon import LANGUAGE_NAMES, MODALITY_WORDS, TASK_WORDS, custom_words, has_cjk

TEXT_VERSION = "1"

STOPWORDS = frozenset(
    "a an the and or of for to in on with that which who can could i me my we want need is are be it its "
    "this these those some any model models llm llms please find show give recommend one something good "
    "best like using use runs run".split()
) | frozenset(
    "的 了 和 与 及 或 能 可以 支持 适合 一个 个 我 想 要 需要 用 用于 用来 哪些 什么 模型 有 吗 呢 在 上 中 是 好".split()
)

_LATIN = re.compile(r"[a-z0-9]+(?:[.\-+][a-z0-9]+)*")
_ALPHA_PREFIX = re.compile(r"^[a-z]+")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")


def size_words(params_b: float | None) -> str:
    """``7.62`` -> ``"7.6b 7b"`` so that "7B" finds it; a few size classes in words too."""
    if not params_b:
        return ""
    words = [f"{params_b:g}b", f"{round(params_b, 1):g}b", f"{int(params_b)}b" if params_b >= 1 else ""]
    if params_b < 1:
        words.append(f"{round(params_b * 1000):d}m")
    if params_b <= 4:
        words += ["small", "小模型"]
    return " ".join(dict.fromkeys(w for w in words if w))


def card_text(card: dict[str, Any]) -> str:
    """Bilingual text of a card for BM25."""
    parts = [
        card["id"],
        card["id"].replace("/", " ").replace("-", " ").replace("_", " "),
        card.get("family", ""),
        card.get("architecture", ""),
        card.get("description", ""),
        size_words(card.get("params_b")),
        " ".join(card.get("aliases", [])),
        " ".join(card.get("formats", [])),
        card.get("license", ""),
    ]
    for task in card.get("tasks", []):
        parts.extend(TASK_WORDS.get(task, (task, "")))
    for modality in card.get("modalities", []):
        if modality != "text":
            parts.extend(MODALITY_WORDS.get(modality, (modality, "")))
    for lang in card.get("languages", [])[:3]:  # the main languages only: "English" should not find everything
        parts.extend(LANGUAGE_NAMES.get(lang, (lang, "")))
    return " ".join(p for p in parts if p)


def card_sentence(card: dict[str, Any]) -> str:
    """English sentence of a card for the dense embedder."""
    inputs = ", ".join(m for m in card.get("modalities", []))
    tasks = ", ".join(card.get("tasks", []))
    langs = ", ".join(LANGUAGE_NAMES.get(c, (c, ""))[0].split()[0] for c in card.get("languages", [])[:6])
    return (
        f"{card['id'].split('/')[-1]}: {card.get('description', '')} Tasks: {tasks}. Inputs: {inputs}. "
        f"Languages: {langs}."
    )


class _Jieba:
    """A private jieba tokenizer (its dictionary loads on first use, about a second)."""

    def __init__(self) -> None:
        self._tokenizer: Any = None
        self._words: set[str] = set()
        self._lock = threading.Lock()

    def cut(self, text: str) -> list[str]:
        with self._lock:
            if self._tokenizer is None:
                import logging

                import jieba

                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                self._words |= custom_words()
                for word in self._words:
                    tokenizer.add_word(word, freq=200_000)
                self._tokenizer = tokenizer
            return list(self._tokenizer.cut_for_search(text))

    def add_words(self, words: Iterable[str]) -> None:
        with self._lock:
            for word in words:
                if word not in self._words and has_cjk(word) and len(word) > 1:
                    self._words.add(word)
                    if self._tokenizer is not None:
                        self._tokenizer.add_word(word, freq=200_000)


_JIEBA = _Jieba()


def learn_words(words: Iterable[str]) -> None:
    """Teach the Chinese tokenizer multi-character words (e.g. the cards' aliases)."""
    _JIEBA.add_words(words)


def tokenize(text: str) -> list[str]:
    """Lower-cased BM25 tokens of English and Chinese text, without stop words."""
    text = text.lower()
    tokens: list[str] = []
    for word in _LATIN.findall(text):
        tokens.append(word)
        parts = re.split(r"[\-+]", word) if ("-" in word or "+" in word) else []
        for part in parts:
            if part and part != word and not (part.isdigit() and len(part) == 1):
                tokens.append(part)
        prefix = _ALPHA_PREFIX.match(word)
        if prefix and prefix.group(0) != word and len(prefix.group(0)) > 1:
            tokens.append(prefix.group(0))
    if has_cjk(text):
        for run in _CJK_RUN.findall(text):
            tokens.extend(_JIEBA.cut(run))
    return [t for t in tokens if t.strip() and t not in STOPWORDS]
