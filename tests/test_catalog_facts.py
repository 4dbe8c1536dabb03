"""The model catalog data file: its schema and its coverage (families, tasks, modalities, languages).

Only the standard library and pytest: the catalog is read as JSON lines straight from
``kernel_magics/search/catalog.jsonl``, without importing the package. The hand-checked table of facts
for single models is in ``tests/test_catalog_facts_table.py``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

CATALOG = Path(__file__).resolve().parent.parent / "kernel_magics" / "search" / "catalog.jsonl"

TASKS = {
    "chat",
    "base",
    "code",
    "math",
    "reasoning",
    "vqa",
    "ocr",
    "caption",
    "grounding",
    "embedding",
    "rerank",
    "asr",
    "tts",
    "translation",
    "function-calling",
}
MODALITIES = {"text", "image", "video", "audio"}
FORMATS = {"safetensors", "gguf", "awq", "gptq", "bnb-4bit", "mlx"}
KEYS = {
    "id",
    "family",
    "architecture",
    "params_b",
    "active_params_b",
    "modalities",
    "tasks",
    "languages",
    "license",
    "context_length",
    "formats",
    "release",
    "description",
}
OPTIONAL_KEYS = {"aliases"}

# Family-ish substrings that must each appear in at least one id (case-insensitive).
FAMILIES = [
    "Qwen",
    "Llama",
    "Mistral",
    "Mixtral",
    "gemma",
    "Phi",
    "deepseek",
    "Yi",
    "glm",
    "internlm",
    "InternVL",
    "MiniCPM",
    "Baichuan",
    "SmolLM",
    "TinyLlama",
    "OLMo",
    "falcon",
    "starcoder",
    "bge",
    "e5",
    "gte",
    "whisper",
    "llava",
    "Florence",
    "GOT-OCR",
    "idefics",
    "blip",
    "nllb",
    "opus-mt",
    "seamless",
    "speecht5",
    "parler-tts",
    "OuteTTS",
    "wav2vec2",
    "granite",
    "aya",
    "command-r",
    "zephyr",
    "openchat",
    "vicuna",
    "Hermes",
    "Orca",
    "stablelm",
    "pythia",
    "gpt2",
    "bloom",
    "jina",
    "nomic",
    "MiniLM",
    "codellama",
    "codestral",
    "pixtral",
    "paligemma",
    "QwQ",
    "Qwen2-VL",
    "Qwen2.5-VL",
    "Qwen-VL",
    "Qwen2-Audio",
    "Qwen3",
    "Qwen2.5-Coder",
    "Qwen2.5-Math",
    "Qwen1.5",
    "chatglm3",
    "glm-4v",
    "codegeex4",
    "internlm2_5",
    "DeepSeek-R1-Distill",
    "deepseek-vl",
    "deepseek-coder",
    "deepseek-math",
    "multilingual-e5",
    "bge-reranker",
    "bge-m3",
]


def _load() -> list[dict]:
    cards = []
    with CATALOG.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            assert line.strip(), f"line {n} is blank"
            cards.append(json.loads(line))
    return cards


@pytest.fixture(scope="module")
def cards() -> list[dict]:
    return _load()


@pytest.fixture(scope="module")
def by_id(cards) -> dict[str, dict]:
    return {c["id"]: c for c in cards}


def test_file_is_utf8_json_lines_without_escapes():
    text = CATALOG.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert "\\u" not in text, "write with ensure_ascii=False"
    assert any(ord(ch) > 127 for ch in text), "aliases should carry Chinese keywords"


def test_card_count(cards):
    assert len(cards) >= 300


def test_schema(cards):
    for c in cards:
        cid = c.get("id")
        keys = set(c)
        assert KEYS <= keys, (cid, KEYS - keys)
        assert keys <= KEYS | OPTIONAL_KEYS, (cid, keys - KEYS - OPTIONAL_KEYS)
        assert isinstance(cid, str) and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", cid), cid
        for key in ("family", "architecture", "license", "description"):
            assert isinstance(c[key], str) and c[key].strip(), (cid, key)
        assert c["license"] == c["license"].lower(), cid
        assert c["family"] == c["family"].lower(), cid
        assert re.fullmatch(r"[A-Z][A-Za-z0-9_]+", c["architecture"]), cid
        assert isinstance(c["params_b"], (int, float)) and not isinstance(c["params_b"], bool), cid
        assert c["params_b"] > 0, cid
        active = c["active_params_b"]
        assert active is None or (isinstance(active, (int, float)) and 0 < active < c["params_b"]), cid
        assert isinstance(c["context_length"], int) and not isinstance(c["context_length"], bool), cid
        assert c["context_length"] >= 0, cid
        if {"chat", "base"} & set(c["tasks"]) or "embedding" in c["tasks"]:
            assert c["context_length"] > 0, cid
        assert re.fullmatch(r"(19|20)\d\d-(0[1-9]|1[0-2])", c["release"]), cid
        for key, vocab in (("modalities", MODALITIES), ("tasks", TASKS), ("formats", FORMATS)):
            assert isinstance(c[key], list), (cid, key)
            assert len(c[key]) == len(set(c[key])), (cid, key)
            assert set(c[key]) <= vocab, (cid, key, set(c[key]) - vocab)
        assert "text" in c["modalities"] or c["modalities"] == ["audio"], cid
        assert c["tasks"], cid
        assert c["languages"] and all(isinstance(x, str) and re.fullmatch(r"[a-z]{2}", x) for x in c["languages"]), cid
        if "aliases" in c:
            assert isinstance(c["aliases"], list) and all(isinstance(a, str) and a for a in c["aliases"]), cid
        assert 20 <= len(c["description"]) <= 400, cid
        assert c["description"].rstrip().endswith("."), cid


def test_ids_unique(cards):
    counts = Counter(c["id"] for c in cards)
    assert [i for i, n in counts.items() if n > 1] == []


def test_sorted_by_family_then_id(cards):
    keys = [(c["family"], c["id"].lower()) for c in cards]
    assert keys == sorted(keys)


MOE_ARCHITECTURES = re.compile(r"Mixtral|Moe|MoE|DeepseekV[23]|DeepseekVLV2|Olmoe|Jamba|Dbrx|GraniteMoe")


def test_moe_cards_have_active_params(cards):
    moe = [c for c in cards if re.search(r"mixtral|moe|-a\d+(\.\d+)?b|8x\d+b", c["id"], re.I)]
    moe += [c for c in cards if MOE_ARCHITECTURES.search(c["architecture"])]
    assert len({c["id"] for c in moe}) >= 20
    for c in moe:
        assert c["active_params_b"] is not None, c["id"]
    for c in cards:  # and only mixtures of experts carry one, described as such for text search
        if c["active_params_b"] is not None:
            assert MOE_ARCHITECTURES.search(c["architecture"]), c["id"]
            text = (c["description"] + " " + " ".join(c.get("aliases", []))).lower()
            assert "moe" in text and "混合专家" in text, c["id"]


def test_non_text_inputs(cards):
    multimodal = [c for c in cards if set(c["modalities"]) - {"text"}]
    assert len(multimodal) >= 40
    for modality in ("image", "video", "audio"):
        assert any(modality in c["modalities"] for c in cards), modality


def test_families_present(cards):
    ids = [c["id"].lower() for c in cards]
    missing = [f for f in FAMILIES if not any(f.lower() in i for i in ids)]
    assert missing == []


def test_every_task_used(cards):
    used = Counter(t for c in cards for t in c["tasks"])
    assert set(used) == TASKS, TASKS - set(used)


def test_tasks_agree_with_modalities(cards):
    for c in cards:
        tasks, mods = set(c["tasks"]), set(c["modalities"])
        if tasks & {"vqa", "caption", "grounding"}:
            assert mods & {"image", "video"}, c["id"]
        if "asr" in tasks:
            assert "audio" in mods, c["id"]
        if mods == {"audio"}:
            assert tasks <= {"asr", "translation"}, c["id"]


def test_multilingual_models_list_several_languages(by_id):
    for cid in (
        "BAAI/bge-m3",
        "openai/whisper-large-v3",
        "facebook/nllb-200-distilled-600M",
        "Qwen/Qwen2.5-7B-Instruct",
        "intfloat/multilingual-e5-large",
        "CohereForAI/aya-23-8B",
    ):
        assert len(by_id[cid]["languages"]) >= 5, cid
        assert "en" in by_id[cid]["languages"], cid


def test_chinese_aliases(by_id):
    assert "通义千问" in by_id["Qwen/Qwen2.5-7B-Instruct"]["aliases"]
    assert "语音识别" in by_id["openai/whisper-large-v3"]["aliases"]
    assert "向量" in by_id["BAAI/bge-m3"]["aliases"]
    assert "重排序" in by_id["BAAI/bge-reranker-v2-m3"]["aliases"]
    assert "翻译" in by_id["facebook/nllb-200-distilled-600M"]["aliases"]
    assert "视觉" in by_id["Qwen/Qwen2-VL-7B-Instruct"]["aliases"]
