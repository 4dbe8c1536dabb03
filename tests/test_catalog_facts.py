"""The model catalog data file: its schema, its coverage, and a hand-checked table of facts.

Only the standard library and pytest: the catalog is read as JSON lines straight from
``kernel_magics/search/catalog.jsonl``, without importing the package.
"""

from __future__ import annotations

import json
import math
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

# Hand-written facts, from the models' config.json files and model cards.
# params_b is compared with a 3% relative tolerance; the other keys exactly,
# except "modalities"/"tasks", which must be contained in the card's lists.
TRUTH: dict[str, dict] = {
    "Qwen/Qwen2.5-7B-Instruct": dict(
        params_b=7.62, architecture="Qwen2ForCausalLM", license="apache-2.0", context_length=32768, tasks={"chat"}
    ),
    "Qwen/Qwen2.5-0.5B-Instruct": dict(
        params_b=0.494, architecture="Qwen2ForCausalLM", license="apache-2.0", context_length=32768
    ),
    "Qwen/Qwen2.5-1.5B-Instruct": dict(params_b=1.54, license="apache-2.0", context_length=32768),
    "Qwen/Qwen2.5-3B-Instruct": dict(params_b=3.09, license="qwen-research"),
    "Qwen/Qwen2.5-14B-Instruct": dict(params_b=14.7, license="apache-2.0"),
    "Qwen/Qwen2.5-32B-Instruct": dict(params_b=32.8, license="apache-2.0"),
    "Qwen/Qwen2.5-72B-Instruct": dict(params_b=72.7, license="qwen"),
    "Qwen/Qwen2.5-Coder-7B-Instruct": dict(
        params_b=7.62, architecture="Qwen2ForCausalLM", license="apache-2.0", tasks={"code"}
    ),
    "Qwen/Qwen2.5-Math-7B-Instruct": dict(params_b=7.62, context_length=4096, tasks={"math"}),
    "Qwen/Qwen2-VL-7B-Instruct": dict(
        params_b=8.29,
        architecture="Qwen2VLForConditionalGeneration",
        license="apache-2.0",
        modalities={"image", "video"},
        tasks={"vqa"},
    ),
    "Qwen/Qwen2-VL-2B-Instruct": dict(
        params_b=2.21, architecture="Qwen2VLForConditionalGeneration", modalities={"image", "video"}
    ),
    "Qwen/Qwen2.5-VL-7B-Instruct": dict(
        architecture="Qwen2_5_VLForConditionalGeneration",
        context_length=128000,
        license="apache-2.0",
        modalities={"image", "video"},
    ),
    "Qwen/Qwen2-Audio-7B-Instruct": dict(
        architecture="Qwen2AudioForConditionalGeneration", license="apache-2.0", modalities={"audio"}
    ),
    "Qwen/Qwen3-8B": dict(architecture="Qwen3ForCausalLM", license="apache-2.0", tasks={"reasoning"}),
    "Qwen/Qwen3-30B-A3B": dict(params_b=30.5, active_params_b=3.3, architecture="Qwen3MoeForCausalLM"),
    "Qwen/Qwen1.5-MoE-A2.7B-Chat": dict(params_b=14.3, active_params_b=2.7, architecture="Qwen2MoeForCausalLM"),
    "deepseek-ai/DeepSeek-V2-Lite-Chat": dict(params_b=15.7, active_params_b=2.4, architecture="DeepseekV2ForCausalLM"),
    "allenai/OLMoE-1B-7B-0924-Instruct": dict(params_b=6.92, active_params_b=1.28, architecture="OlmoeForCausalLM"),
    "microsoft/Phi-3.5-MoE-instruct": dict(params_b=41.9, active_params_b=6.6, architecture="PhiMoEForCausalLM"),
    "meta-llama/Llama-3.1-8B-Instruct": dict(
        params_b=8.03, architecture="LlamaForCausalLM", license="llama3.1", context_length=131072, tasks={"chat"}
    ),
    "meta-llama/Meta-Llama-3-8B-Instruct": dict(params_b=8.03, license="llama3", context_length=8192),
    "meta-llama/Llama-3.2-1B-Instruct": dict(params_b=1.24, license="llama3.2", context_length=131072),
    "meta-llama/Llama-3.2-3B-Instruct": dict(params_b=3.21, license="llama3.2", context_length=131072),
    "meta-llama/Llama-3.2-11B-Vision-Instruct": dict(
        params_b=10.7, architecture="MllamaForConditionalGeneration", modalities={"image"}
    ),
    "meta-llama/Llama-2-7b-chat-hf": dict(params_b=6.74, license="llama2", context_length=4096),
    "mistralai/Mistral-7B-Instruct-v0.2": dict(
        params_b=7.24, architecture="MistralForCausalLM", license="apache-2.0", context_length=32768
    ),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": dict(
        params_b=46.7,
        active_params_b=12.9,
        license="apache-2.0",
        architecture="MixtralForCausalLM",
        context_length=32768,
    ),
    "mistralai/Mistral-Nemo-Instruct-2407": dict(
        params_b=12.2, architecture="MistralForCausalLM", license="apache-2.0"
    ),
    "google/gemma-2-2b-it": dict(params_b=2.61, architecture="Gemma2ForCausalLM", license="gemma", context_length=8192),
    "google/gemma-2-9b-it": dict(params_b=9.24, license="gemma", context_length=8192),
    "google/gemma-2-27b-it": dict(params_b=27.2, license="gemma"),
    "google/gemma-7b": dict(params_b=8.54, architecture="GemmaForCausalLM", tasks={"base"}),
    "google/paligemma-3b-mix-224": dict(
        architecture="PaliGemmaForConditionalGeneration", license="gemma", modalities={"image"}
    ),
    "microsoft/Phi-3-mini-4k-instruct": dict(
        params_b=3.82, architecture="Phi3ForCausalLM", license="mit", context_length=4096
    ),
    "microsoft/Phi-3-mini-128k-instruct": dict(params_b=3.82, context_length=131072, license="mit"),
    "microsoft/phi-2": dict(params_b=2.78, architecture="PhiForCausalLM", license="mit", context_length=2048),
    "microsoft/phi-4": dict(params_b=14.7, license="mit", context_length=16384),
    "microsoft/Florence-2-large": dict(
        architecture="Florence2ForConditionalGeneration", license="mit", modalities={"image"}, tasks={"ocr", "caption"}
    ),
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": dict(
        params_b=1.1, architecture="LlamaForCausalLM", license="apache-2.0", context_length=2048
    ),
    "HuggingFaceTB/SmolLM2-135M-Instruct": dict(params_b=0.135, license="apache-2.0", context_length=8192),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": dict(params_b=1.71, license="apache-2.0"),
    "openai/whisper-large-v3": dict(
        params_b=1.55,
        architecture="WhisperForConditionalGeneration",
        license="apache-2.0",
        modalities={"audio"},
        tasks={"asr"},
    ),
    "openai/whisper-large-v3-turbo": dict(params_b=0.809, license="mit", modalities={"audio"}, tasks={"asr"}),
    "openai/whisper-tiny": dict(params_b=0.039, architecture="WhisperForConditionalGeneration", modalities={"audio"}),
    "BAAI/bge-m3": dict(
        params_b=0.568, architecture="XLMRobertaModel", license="mit", context_length=8192, tasks={"embedding"}
    ),
    "BAAI/bge-small-en-v1.5": dict(
        params_b=0.0334, architecture="BertModel", license="mit", context_length=512, tasks={"embedding"}
    ),
    "BAAI/bge-reranker-v2-m3": dict(tasks={"rerank"}, license="apache-2.0"),
    "sentence-transformers/all-MiniLM-L6-v2": dict(
        params_b=0.0227, architecture="BertModel", license="apache-2.0", tasks={"embedding"}
    ),
    "intfloat/multilingual-e5-large": dict(
        params_b=0.560, architecture="XLMRobertaModel", license="mit", context_length=512
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": dict(
        params_b=7.62, architecture="Qwen2ForCausalLM", license="mit", tasks={"reasoning"}
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": dict(params_b=8.03, architecture="LlamaForCausalLM", license="mit"),
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct": dict(
        params_b=15.7, active_params_b=2.4, architecture="DeepseekV2ForCausalLM", tasks={"code"}
    ),
    "llava-hf/llava-1.5-7b-hf": dict(params_b=7.06, architecture="LlavaForConditionalGeneration", modalities={"image"}),
    "THUDM/glm-4-9b-chat": dict(architecture="ChatGLMModel", license="glm-4", context_length=131072),
    "openai-community/gpt2": dict(params_b=0.124, architecture="GPT2LMHeadModel", license="mit", context_length=1024),
    "EleutherAI/pythia-70m": dict(architecture="GPTNeoXForCausalLM", license="apache-2.0", context_length=2048),
    "bigcode/starcoder2-3b": dict(
        params_b=3.03,
        architecture="Starcoder2ForCausalLM",
        license="bigcode-openrail-m",
        context_length=16384,
        tasks={"code"},
    ),
    "google/flan-t5-base": dict(
        params_b=0.248, architecture="T5ForConditionalGeneration", license="apache-2.0", context_length=512
    ),
    "facebook/nllb-200-distilled-600M": dict(
        architecture="M2M100ForConditionalGeneration", license="cc-by-nc-4.0", tasks={"translation"}
    ),
    "bigscience/bloom-560m": dict(params_b=0.559, architecture="BloomForCausalLM", license="bigscience-bloom-rail-1.0"),
    "tiiuae/falcon-7b": dict(
        params_b=7.22, architecture="FalconForCausalLM", license="apache-2.0", context_length=2048
    ),
}


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


def test_truth_table_is_big_enough():
    assert len(TRUTH) >= 35


@pytest.mark.parametrize("model_id", sorted(TRUTH))
def test_facts(by_id, model_id):
    assert model_id in by_id, f"{model_id} missing from the catalog"
    card, truth = by_id[model_id], TRUTH[model_id]
    for key, want in truth.items():
        got = card[key]
        if key in ("params_b", "active_params_b"):
            assert got is not None and math.isclose(got, want, rel_tol=0.03), (key, got, want)
        elif key in ("modalities", "tasks"):
            assert set(want) <= set(got), (key, got, want)
        else:
            assert got == want, (key, got, want)
