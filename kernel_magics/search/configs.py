"""Facts a model's ``config.json`` tells: architecture, context length, input kinds, active parameters.

Shared by the cards of local models (:mod:`kernel_magics.search.local`) and of models pulled from the
Hub (:mod:`kernel_magics.search.hubcards`).

Active parameters of a mixture of experts: every token runs ``k`` of the ``E`` routed experts of each
sparse layer, so ``active = total - (E - k) * expert_size * sparse_layers``, with a gated expert MLP of
``3 * hidden_size * expert_intermediate_size`` weights (Mixtral, Qwen-MoE, DeepSeek-V2/V3, OLMoE, Phi-MoE,
Granite-MoE). Qwen3-30B-A3B: 30.5B - 120 * 3 * 2048 * 768 * 48 = 3.35B active.
"""

from __future__ import annotations

import re
from typing import Any

_EXPERTS = ("num_local_experts", "n_routed_experts", "num_experts", "moe_num_experts")
_PER_TOKEN = ("num_experts_per_tok", "num_experts_per_token", "experts_per_token", "moe_topk")
_CONTEXT = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "max_target_positions")


def _sub(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _first(config: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = config.get(key)
        if value:
            return value
    return None


def architecture(config: dict[str, Any]) -> str:
    names = config.get("architectures") or [""]
    return str(names[0] if isinstance(names, list) and names else "")


def model_type(config: dict[str, Any]) -> str:
    return str(config.get("model_type") or _sub(config, "text_config").get("model_type") or "")


def context_length(config: dict[str, Any]) -> int:
    """The longest input in tokens (the language model's, for vision-language configs)."""
    value = _first(config, _CONTEXT) or _first(_sub(config, "text_config"), _CONTEXT)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def input_modalities(config: dict[str, Any]) -> list[str]:
    """Inputs the architecture takes: text plus image / video / audio parts named in the config."""
    kind = model_type(config)
    modalities = ["text"]
    if "vision_config" in config or "image_token_id" in config or "image_token_index" in config:
        modalities.append("image")
    if "video_token_id" in config or "video_token_index" in config:
        modalities.append("video")
    if "audio_config" in config or "whisper" in kind:
        modalities = [*([] if "whisper" in kind else modalities), "audio"]
    return modalities


def _sparse_layers(config: dict[str, Any]) -> int:
    layers = int(config.get("num_hidden_layers") or 0)
    dense_first = int(config.get("first_k_dense_replace") or 0)  # DeepSeek: the first layers are dense
    step = int(config.get("decoder_sparse_step") or 1)  # Qwen-MoE: every step-th layer is sparse
    dense_only = set(config.get("mlp_only_layers") or [])
    return sum(1 for i in range(dense_first, layers) if (i + 1) % step == 0 and i not in dense_only)


def active_params(config: dict[str, Any], total: float) -> float | None:
    """Parameters each token runs through in a mixture of experts (same unit as ``total``); None when dense."""
    cfg = config if _first(config, _EXPERTS) else _sub(config, "text_config")
    experts, per_token = _first(cfg, _EXPERTS), _first(cfg, _PER_TOKEN)
    hidden = cfg.get("hidden_size") or cfg.get("d_model")
    size = cfg.get("moe_intermediate_size") or cfg.get("expert_intermediate_size") or cfg.get("intermediate_size")
    try:
        experts, per_token, hidden, size = int(experts), int(per_token), int(hidden), int(size)
    except (TypeError, ValueError):
        return None
    if experts <= per_token or total <= 0:
        return None
    inactive = (experts - per_token) * 3 * hidden * size * _sparse_layers(cfg)
    active = total - inactive
    return active if 0 < active < total else None


def active_from_name(name: str) -> float | None:
    """Active billions written in a model name: ``Qwen3-30B-A3B`` -> 3, ``Llama-4-Scout-17B-16E`` -> 17."""
    lowered = name.lower()
    match = re.search(r"(?<![a-z0-9])a(\d+(?:\.\d+)?)([bm])(?![a-z0-9])", lowered)
    if match:
        return float(match.group(1)) / (1000 if match.group(2) == "m" else 1)
    match = re.search(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b-\d+e(?![a-z0-9])", lowered)
    return float(match.group(1)) if match else None
