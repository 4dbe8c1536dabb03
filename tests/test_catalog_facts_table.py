"""The model catalog against a hand-checked table of facts: sizes, architectures, licenses, context lengths.

Only the standard library and pytest: the catalog is read as JSON lines straight from
``kernel_magics/search/catalog.jsonl``, without importing the package. Its schema and coverage are checked
in ``tests/test_catalog_facts.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

CATALOG = Path(__file__).resolve().parent.parent / "kernel_magics" / "search" / "catalog.jsonl"

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


@pytest.fixture(scope="module")
def by_id() -> dict[str, dict]:
    lines = CATALOG.read_text(encoding="utf-8").splitlines()
    return {card["id"]: card for card in map(json.loads, lines)}


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
