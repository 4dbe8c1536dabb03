"""Query understanding, names, tokenizer and flag converters of the model search (no models loaded)."""

from __future__ import annotations

import pytest

from kernel_magics.errors import SwiftConfigError
from kernel_magics.search.entities import EntityIndex
from kernel_magics.search.lexicon import to_english
from kernel_magics.search.licenses import COMMERCIAL
from kernel_magics.search.phrases import QUANTIZED
from kernel_magics.search.text import tokenize
from kernel_magics.search.understand import understand
from kernel_magics.search.units import billions, token_count


def test_english_sizes_languages_formats():
    u = understand("small chinese chat model under 3B with a GGUF build")
    assert u.max_params_b == 3.0 and u.min_params_b is None
    assert u.languages == {"zh"} and u.soft_tasks == {"chat"}
    assert u.formats == frozenset({"gguf"})
    assert [p.text for p in u.phrases] == ["small", "chinese", "chat", "under 3B", "GGUF"]


def test_chinese_vision_query():
    u = understand("能看图说话、支持中文对话的视觉问答模型")
    assert u.modalities == {"image"} and u.languages == {"zh"}
    assert u.soft_tasks == {"caption", "chat", "vqa"}
    assert "看图说话" in [p.text for p in u.phrases]  # the longest phrase wins over 看图 / 说话


def test_phone_means_small_and_quantized():
    u = understand("适合手机部署的小模型")
    assert u.max_params_b == 4.0 and u.formats == QUANTIZED and u.prefer_small


@pytest.mark.parametrize(
    ("query", "low", "high"),
    [
        ("between 1B and 3B", 1.0, 3.0),
        ("1-3b chat", 1.0, 3.0),
        ("3B以下的中文模型", None, 3.0),
        ("at least 70B", 70.0, None),
        ("70B+ model", 70.0, None),
        ("500M embedding", 0.4, 0.625),
        ("70亿参数", 5.6, 8.75),
        ("llama-3-8b instruct", 6.4, 10.0),  # the 3 of llama-3 is a version, not a range
        ("qwen2.5-7b", 5.6, 8.75),
    ],
)
def test_size_phrases(query, low, high):
    u = understand(query)
    assert (u.min_params_b, u.max_params_b) == (low, high)


@pytest.mark.parametrize(
    ("query", "tokens"),
    [("128k context", 128_000), ("1M context window", 1_000_000), ("长上下文", 100_000), ("100000 tokens", 100_000)],
)
def test_context_phrases(query, tokens):
    assert understand(query).min_context == tokens


def test_4bit_is_not_a_size_and_int4_is_quantized():
    u = understand("4-bit int4 quantized")
    assert u.min_params_b is None and u.max_params_b is None and u.formats == QUANTIZED


def test_tasks_licenses_and_speech():
    u = understand("可商用的语音识别模型")
    assert u.licenses == COMMERCIAL and u.task_groups == [frozenset({"asr"})]
    u = understand("reranker for RAG")
    assert frozenset({"rerank"}) in u.task_groups and frozenset({"embedding", "rerank"}) in u.task_groups
    assert understand("apache licensed model").licenses == frozenset({"apache-2.0"})


def test_writing_moe_and_chatgpt_phrases():
    assert understand("best model for writing poems").soft_tasks == {"chat"}
    assert understand("混合专家模型").moe and understand("MoE with few active parameters").moe
    assert understand("something like ChatGPT").soft_tasks == {"chat"}


def test_contradictory_sizes_are_one_line():
    with pytest.raises(SwiftConfigError, match="contradictory size filters") as err:
        understand("70B model for phones")
    assert "\n" not in str(err.value) and "'phones'" in str(err.value)


def test_nothing_understood_in_plain_words():
    u = understand("xqzv blorf")
    assert not u.phrases and not u.has_constraints and not u.has_preferences


def test_entity_names():
    cards = [
        {"id": "meta-llama/Llama-3.1-8B-Instruct", "family": "llama3.1", "aliases": ["羊驼"]},
        {"id": "meta-llama/Llama-2-7b-hf", "family": "llama2", "aliases": ["羊驼"]},
        {"id": "Qwen/Qwen2.5-7B-Instruct", "family": "qwen2.5", "aliases": ["千问"]},
        {"id": "Qwen/Qwen2.5-Coder-7B-Instruct", "family": "qwen2.5-coder", "aliases": ["千问"]},
        {"id": "Qwen/Qwen2-VL-7B-Instruct", "family": "qwen2-vl", "aliases": ["千问"]},
        {"id": "codellama/CodeLlama-7b-hf", "family": "codellama", "aliases": []},
    ]
    names = EntityIndex(cards)
    ids = {m.text: set(m.ids) for m in names.mentions("llama 3.1 or Qwen2-VL")}
    assert ids == {"llama 3.1": {cards[0]["id"]}, "Qwen2-VL": {cards[4]["id"]}}
    (series,) = names.mentions("qwen 2.5")
    assert set(series.ids) == {cards[2]["id"], cards[3]["id"]}  # the 2.5 series, not qwen2-vl
    (qwen,) = names.mentions("qwen")
    assert len(qwen.ids) == 3  # every qwen family
    (base,) = names.mentions("any llama")
    assert set(base.ids) == {cards[0]["id"], cards[1]["id"]}  # not CodeLlama
    assert names.mentions("code model") == []
    (brand,) = names.mentions("千问的模型")
    assert len(brand.ids) == 3


def test_tokenizer_keeps_ids_and_cuts_chinese():
    tokens = tokenize("Qwen/Qwen2.5-7B-Instruct 能看图说话的中文模型")
    for token in ("qwen2.5-7b-instruct", "qwen2.5", "7b", "instruct", "qwen", "看图说话", "看图", "中文"):
        assert token in tokens
    assert "的" not in tokens and "模型" not in tokens


def test_to_english_for_the_dense_channel():
    assert to_english("适合手机部署的小模型") == "phone mobile deploy small model"
    assert to_english("plain english") == "plain english"


@pytest.mark.parametrize(("text", "value"), [("3", 3.0), ("1.5B", 1.5), ("500M", 0.5)])
def test_billions(text, value):
    assert billions(text) == value


@pytest.mark.parametrize(("text", "value"), [("32768", 32768), ("100k", 100_000), ("1M", 1_000_000)])
def test_token_count(text, value):
    assert token_count(text) == value


def test_converters_reject_words():
    with pytest.raises(ValueError, match="size in billions"):
        billions("large")
    with pytest.raises(ValueError, match="number of tokens"):
        token_count("long")
