"""Search test data: the quality query set and a small catalog.

``QUERIES``: queries (English and Chinese) with what every top-5 hit must satisfy; used by
``tests/test_search_quality.py`` (precision@5 of hybrid search vs BM25 alone) and ``benchmarks/search.py``
(latency over the same queries). ``MINI``: a 13-card catalog for fast tests (``write_mini_catalog``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Card = dict[str, Any]


def image(c: Card) -> bool:
    return "image" in c["modalities"]


def zh(c: Card) -> bool:
    return "zh" in c["languages"]


def size_at_most(b: float) -> Callable[[Card], bool]:
    return lambda c: 0 < c["params_b"] <= b


def size_between(lo: float, hi: float) -> Callable[[Card], bool]:
    return lambda c: lo <= c["params_b"] <= hi


def task(*names: str) -> Callable[[Card], bool]:
    return lambda c: any(n in c["tasks"] for n in names)


def fmt(*names: str) -> Callable[[Card], bool]:
    return lambda c: any(n in c["formats"] for n in names)


def quantized(c: Card) -> bool:
    return bool({"gguf", "awq", "gptq", "bnb-4bit", "mlx"} & set(c["formats"]))


def context_at_least(n: int) -> Callable[[Card], bool]:
    return lambda c: c["context_length"] >= n


def lang(code: str) -> Callable[[Card], bool]:
    return lambda c: code in c["languages"]


def license_in(*names: str) -> Callable[[Card], bool]:
    return lambda c: c["license"] in names


def id_has(*parts: str) -> Callable[[Card], bool]:
    return lambda c: any(p.lower() in c["id"].lower() for p in parts)


def family_is(*prefixes: str) -> Callable[[Card], bool]:
    return lambda c: c["family"].lower().startswith(prefixes)


def moe_active(low: float, high: float) -> Callable[[Card], bool]:
    """A mixture of experts running ``low`` to ``high`` billion parameters per token."""

    def test(c: Card) -> bool:
        active = c["active_params_b"]  # None, or NaN in a DataFrame row, for dense models
        return active is not None and active == active and low <= active <= high and active < c["params_b"]

    return test


def audio_in(c: Card) -> bool:
    return "audio" in c["modalities"]


COMMERCIAL_OK = (
    "apache-2.0",
    "mit",
    "bsd-3-clause",
    "cc-by-4.0",
    "cc-by-sa-3.0",
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "gemma",
    "qwen",
    "deepseek",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "falcon-llm-license",
)

# (query, [properties every top-5 hit must have])
QUERIES: list[tuple[str, list[Callable[[Card], bool]]]] = [
    ("small chinese chat model under 3B with a GGUF build", [zh, size_at_most(3), task("chat"), fmt("gguf")]),
    ("a vision-language model that can describe pictures and chat in Chinese", [image, zh]),
    ("small model I can run on a phone", [size_at_most(4), quantized]),
    ("long context model for summarising contracts", [context_at_least(100_000)]),
    ("code model", [task("code"), id_has("code", "coder", "starcoder", "codestral", "codegeex")]),
    (
        "coding assistant under 8B with a permissive license",
        [task("code"), size_at_most(8), license_in("apache-2.0", "mit", "bsd-3-clause")],
    ),
    ("math reasoning model", [task("math", "reasoning")]),
    ("sentence embedding model for semantic search", [task("embedding")]),
    ("reranker for RAG", [task("rerank")]),
    ("speech recognition model that transcribes audio", [task("asr"), audio_in]),
    ("text to speech voice model", [task("tts")]),
    ("OCR model to read text in scanned documents", [task("ocr"), image]),
    ("machine translation between English and Chinese", [task("translation"), zh, lang("en")]),
    ("video understanding model", [lambda c: "video" in c["modalities"]]),
    ("7B instruct model with AWQ quantization", [size_between(5.6, 8.75), fmt("awq")]),
    ("model with function calling for agents", [task("function-calling")]),
    ("base model around 1.5B for fine-tuning", [task("base"), size_between(1.2, 1.875)]),
    ("Japanese chat model", [lang("ja"), task("chat")]),
    ("commercially usable chat model with 128k context", [license_in(*COMMERCIAL_OK), context_at_least(128_000)]),
    ("object detection and grounding vision model", [task("grounding"), image]),
    ("MLX build for my MacBook, small chat model", [fmt("mlx"), size_at_most(4)]),
    ("Qwen2-VL 7B", [id_has("qwen2-vl"), size_between(5.6, 8.75)]),
    ("InternVL for charts and documents", [id_has("internvl")]),
    ("DeepSeek R1 distilled model under 8B", [id_has("deepseek-r1-distill"), size_at_most(8)]),
    ("llama 3.1 instruct", [family_is("llama3.1"), task("chat")]),
    ("gemma 2 chat", [family_is("gemma2"), task("chat")]),
    ("通义千问的视觉模型", [id_has("qwen"), image]),
    ("智谱的中文对话模型", [id_has("thudm"), zh]),
    ("image captioning model", [task("caption")]),
    ("visual question answering model", [task("vqa")]),
    ("customer service chatbot in Chinese", [zh, task("chat")]),
    ("model that can read charts and tables in images", [image]),
    ("给图片生成描述的模型", [image, task("caption")]),
    ("多语言翻译模型", [task("translation")]),
    ("能看图说话、支持中文对话的视觉问答模型", [image, zh]),
    ("适合手机部署的小模型", [size_at_most(4), quantized]),
    ("中文代码模型", [task("code"), zh]),
    ("可商用的中文对话模型", [zh, license_in(*COMMERCIAL_OK)]),
    ("语音识别模型，支持中文", [task("asr"), zh]),
    ("长上下文的中文大模型", [context_at_least(100_000), zh]),
    ("中文向量模型，用于检索", [task("embedding", "rerank"), zh]),
    ("3B以下的数学模型", [task("math"), size_at_most(3)]),
    ("文字识别 OCR 模型", [task("ocr")]),
    ("支持GGUF量化的7B中文模型", [fmt("gguf"), size_between(5.6, 8.75), zh]),
    ("深度思考推理模型", [task("reasoning")]),
    ("mixture-of-experts chat model with fewer than 5B active parameters", [moe_active(0, 5), task("chat")]),
    ("激活参数少于5B的混合专家模型", [moe_active(0, 5)]),
    ("MoE model with about 3B activated parameters", [moe_active(2.4, 3.75)]),
]


def _card(
    id, family, params, modalities, tasks, languages, license, context, formats, release, description, aliases=()
):  # noqa: A002
    return {
        "id": id,
        "family": family,
        "architecture": "",
        "params_b": params,
        "active_params_b": None,
        "modalities": modalities,
        "tasks": tasks,
        "languages": languages,
        "license": license,
        "context_length": context,
        "formats": formats,
        "release": release,
        "description": description,
        "aliases": list(aliases),
    }


MINI = [
    _card("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5", 0.494, ["text"], ["chat"], ["zh", "en"], "apache-2.0", 32768,
          ["safetensors", "gguf", "awq"], "2024-09", "Small Qwen2.5 chat model.", ["千问", "对话", "手机", "小模型"]),
    _card("Qwen/Qwen2.5-7B-Instruct", "qwen2.5", 7.62, ["text"], ["chat", "code", "math"], ["zh", "en"], "apache-2.0",
          32768, ["safetensors", "gguf", "awq", "gptq"], "2024-09", "Qwen2.5 chat model.", ["千问", "对话"]),
    _card("Qwen/Qwen2-VL-2B-Instruct", "qwen2-vl", 2.21, ["text", "image", "video"], ["chat", "vqa", "ocr", "caption"],
          ["zh", "en"], "apache-2.0", 32768, ["safetensors", "gguf"], "2024-08",
          "Vision-language chat model that reads images and videos.", ["千问", "看图", "视觉问答"]),
    _card("openbmb/MiniCPM-V-2_6", "minicpm-v", 8.1, ["text", "image", "video"], ["chat", "vqa", "ocr"], ["zh", "en"],
          "minicpm", 32768, ["safetensors", "gguf"], "2024-08", "Efficient vision-language model for phones.",
          ["面壁", "看图"]),
    _card("llava-hf/llava-1.5-7b-hf", "llava", 7.06, ["text", "image"], ["chat", "vqa", "caption"], ["en"], "llama2",
          4096, ["safetensors"], "2023-10", "LLaVA 1.5 vision assistant (English).", ["看图"]),
    _card("meta-llama/Llama-3.1-8B-Instruct", "llama3.1", 8.03, ["text"], ["chat", "function-calling"],
          ["en", "de", "fr"], "llama3.1", 131072, ["safetensors", "gguf", "awq"], "2024-07", "Llama 3.1 chat model.",
          ["羊驼", "长上下文"]),
    _card("meta-llama/Llama-3.1-70B-Instruct", "llama3.1", 70.6, ["text"], ["chat", "function-calling"],
          ["en", "de", "fr"], "llama3.1", 131072, ["safetensors", "gguf", "awq"], "2024-07",
          "Large Llama 3.1 chat model.", ["羊驼", "长上下文"]),
    _card("Qwen/Qwen2.5-Coder-1.5B-Instruct", "qwen2.5-coder", 1.54, ["text"], ["chat", "code"], ["zh", "en"],
          "apache-2.0", 32768, ["safetensors", "gguf"], "2024-09", "Code model.", ["代码", "编程"]),
    _card("bigcode/starcoder2-3b", "starcoder2", 3.03, ["text"], ["code", "base"], ["en"], "bigcode-openrail-m", 16384,
          ["safetensors"], "2024-02", "Code base model trained on The Stack v2.", ["代码"]),
    _card("BAAI/bge-small-zh-v1.5", "bge", 0.024, ["text"], ["embedding"], ["zh"], "mit", 512, ["safetensors"],
          "2023-09", "Chinese sentence embedding model.", ["向量", "检索"]),
    _card("BAAI/bge-reranker-base", "bge", 0.278, ["text"], ["rerank"], ["zh", "en"], "mit", 512, [], "2023-09",
          "Cross-encoder reranker.", ["重排序", "检索"]),
    _card("openai/whisper-small", "whisper", 0.244, ["audio"], ["asr", "translation"], ["en", "zh"], "apache-2.0", 448,
          ["safetensors"], "2022-09", "Speech recognition model.", ["语音识别"]),
    _card("microsoft/Phi-3-mini-128k-instruct", "phi3", 3.82, ["text"], ["chat", "math"], ["en"], "mit", 131072,
          ["safetensors", "gguf", "mlx"], "2024-04", "Small model with 128k context.", ["微软", "手机"]),
]  # fmt: skip


def write_mini_catalog(path: str | Path) -> Path:
    """Write ``MINI`` as a catalog ``.jsonl`` file."""
    path = Path(path)
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in MINI) + "\n", encoding="utf-8")
    return path
