"""Catalog cards from Hub listings: the same fields as the packaged catalog, derived from what the Hub says.

* parameters: the safetensors metadata of the listing (``safetensors.total``), else the size in the name;
* active parameters of a mixture of experts: computed from ``config.json`` (:func:`configs.active_params`),
  else read from the name (``-A3B``, ``-17B-16E``);
* context length and input kinds: ``config.json``; tasks: the pipeline tag, the tags and the name;
* languages and license: the model card's metadata (``cardData``);
* formats: ``safetensors`` / ``gguf`` of the repo itself plus its quantized siblings (``-GGUF``, ``-AWQ``,
  ``-GPTQ``, MLX and bitsandbytes repos whose ``base_model:quantized:`` tag or name points at it).
"""

from __future__ import annotations

import re
from typing import Any

from . import configs

# pipeline tag -> (inputs, tasks); text-generation decides chat / base from tags and name
PIPELINES: dict[str, tuple[list[str], list[str]]] = {
    "text-generation": (["text"], []),
    "image-text-to-text": (["text", "image"], ["chat", "vqa", "caption"]),
    "automatic-speech-recognition": (["audio"], ["asr"]),
    "sentence-similarity": (["text"], ["embedding"]),
    "feature-extraction": (["text"], ["embedding"]),
    "text-ranking": (["text"], ["rerank"]),
    "text-to-speech": (["text"], ["tts"]),
}
_QUANT_SUFFIX = re.compile(
    r"[-_.](?:gguf|awq(?:-4bit)?|gptq(?:-int[48])?|mlx(?:-[48]bit)?|[48]bit|bnb-4bit|int4)$", re.IGNORECASE
)
_SIZE_IN_NAME = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")


def quantized_format(info: Any) -> str | None:
    """The build format of a quantized repo (gguf, awq, gptq, mlx, bnb-4bit), None for other repos."""
    tags = {t.lower() for t in (info.tags or [])}
    name = info.id.lower()
    checks = (
        ("gguf", "gguf" in tags or name.endswith("gguf")),
        ("awq", "awq" in tags or "-awq" in name),
        ("gptq", "gptq" in tags or "-gptq" in name),
        ("mlx", "mlx" in tags or name.startswith("mlx-community/")),
        ("bnb-4bit", "bitsandbytes" in tags or "bnb-4bit" in name),
    )
    return next((fmt for fmt, hit in checks if hit), None)


def quantized_base(info: Any) -> str | None:
    """The model a quantized repo was made from: its ``base_model:quantized:`` tag, card or name."""
    for tag in info.tags or []:
        if tag.startswith("base_model:quantized:"):
            return tag.split(":", 2)[2]
    base = getattr(info.card_data, "base_model", None) if info.card_data is not None else None
    if isinstance(base, list):
        base = base[0] if base else None
    if isinstance(base, str) and base:
        return base
    stripped = _QUANT_SUFFIX.sub("", info.id)
    return stripped if stripped != info.id else None


def family_of(repo_id: str, kind: str) -> str:
    """``Qwen/Qwen3-30B-A3B-Instruct-2507`` -> ``qwen3``; ``meta-llama/Llama-3.1-8B`` -> ``llama3.1``."""
    name = repo_id.split("/")[-1].lower()
    name = re.split(r"[-_](?:\d+(?:\.\d+)?[bm](?![a-z0-9])|\d+x\d+b|instruct|chat|it|base|hf)", name)[0]
    name = re.sub(r"[-_](?=\d)", "", name)
    return name or kind.lower()


def _languages(card_data: Any) -> list[str]:
    value = getattr(card_data, "language", None) if card_data is not None else None
    values = [value] if isinstance(value, str) else list(value or [])
    codes = [str(v).lower().split("-")[0] for v in values]
    return list(dict.fromkeys(c for c in codes if re.fullmatch(r"[a-z]{2}", c)))


def _license(card_data: Any) -> str:
    if card_data is None:
        return ""
    value = str(getattr(card_data, "license", "") or "")
    if value == "other":
        value = str(getattr(card_data, "license_name", "") or value)
    return value.lower()


def _params(info: Any) -> float | None:
    """Total parameters (units, not billions) from the safetensors metadata, else from the name."""
    total = getattr(info.safetensors, "total", None) if info.safetensors is not None else None
    if total:
        return float(total)
    match = _SIZE_IN_NAME.search(info.id.split("/")[-1].lower())
    if not match:
        return None
    return float(match.group(1)) * (1e6 if match.group(2) == "m" else 1e9)


def _tasks(info: Any, config: dict[str, Any]) -> tuple[list[str], list[str]]:
    modalities, tasks = PIPELINES.get(info.pipeline_tag or "", (["text"], []))
    tags = {t.lower() for t in (info.tags or [])}
    name = info.id.split("/")[-1].lower()
    modalities = list(dict.fromkeys(modalities + [m for m in configs.input_modalities(config) if m != "text"]))
    if "audio" in modalities and info.pipeline_tag == "automatic-speech-recognition":
        modalities = ["audio"]
    tasks = list(tasks)
    if info.pipeline_tag == "text-generation":
        chat = "conversational" in tags or re.search(r"instruct|chat|(?<![a-z])it(?![a-z])", name)
        tasks = ["chat"] if chat else ["base"]
    extra = (("code", r"code|coder"), ("math", r"math"), ("reasoning", r"(?<![a-z])r1(?![0-9])|reason|think|qwq"))
    if tasks and set(tasks) & {"chat", "base"}:
        tasks += [task for task, pattern in extra if re.search(pattern, name)]
        tasks += ["function-calling"] if tags & {"function-calling", "tool-use", "tool_calling"} else []
    return modalities, tasks or ["base"]


def _round(value: float) -> float:
    return float(f"{value / 1e9:.3g}")


def card_from_listing(info: Any, config: dict[str, Any], siblings: set[str]) -> dict[str, Any] | None:
    """A catalog card for one listed model (None when its size is unknown)."""
    total = _params(info)
    if not total:
        return None
    config = config or dict(info.config or {})
    active = configs.active_params(config, total)
    active_b = _round(active) if active else configs.active_from_name(info.id.split("/")[-1])
    params_b = _round(total)
    modalities, tasks = _tasks(info, config)
    formats = (["safetensors"] if info.safetensors is not None else []) + sorted(siblings - {"safetensors"})
    kind = configs.model_type(config)
    architecture = configs.architecture(config) or "".join(p.title() for p in re.split(r"[-_]", kind)) or "Unknown"
    release = info.created_at.strftime("%Y-%m") if info.created_at else ""
    author = info.id.split("/")[0]
    sparse = f" ({active_b:g}B active, mixture of experts)" if active_b and active_b < params_b else ""
    description = (
        f"{info.id.split('/')[-1]} by {author}: {architecture}, {params_b:g}B parameters{sparse}; "
        f"{info.pipeline_tag or 'model'} from the Hub ({info.downloads or 0:,} downloads)."
    )
    return {
        "id": info.id,
        "family": family_of(info.id, kind),
        "architecture": architecture,
        "params_b": params_b,
        "active_params_b": active_b if active_b and active_b < params_b else None,
        "modalities": modalities,
        "tasks": tasks,
        "languages": _languages(info.card_data),
        "license": _license(info.card_data),
        "context_length": configs.context_length(config),
        "formats": list(dict.fromkeys(formats + (["gguf"] if "gguf" in (info.tags or []) else []))),
        "release": release,
        "description": description[:400],
        "aliases": ["hub", *(["MoE", "混合专家"] if sparse else [])],
    }
