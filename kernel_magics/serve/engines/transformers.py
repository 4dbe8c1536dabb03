"""The transformers engine's registry entry: text models get :class:`~.hf.HFEngine`, vision-language models
:class:`~.hf_vlm.HFVisionEngine` (same scheduler, image-aware prompts). It serves every model on every
device, so ``backend="auto"`` falls back to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...hub import is_vision_model
from ..protocol import SAMPLING_FIELDS

# the request fields each variant acts on, per endpoint (ServingEngine.honoured_fields)
TEXT_FIELDS = {
    "chat": SAMPLING_FIELDS
    | {"messages", "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias"}
    | {"logprobs", "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls"},
    "completions": SAMPLING_FIELDS
    | {"prompt", "echo", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs"},
}
# vision-language models generate one request at a time through generate(): sampling settings only
VISION_FIELDS = {
    "chat": SAMPLING_FIELDS | {"messages", "max_completion_tokens"},
    "completions": SAMPLING_FIELDS | {"prompt"},
}


def unavailable(device: Any, model_dir: Path, auto: bool = False) -> str | None:
    """Never: transformers and peft are the project's own dependencies."""
    return None


def create(model_dir: Path, served_name: str, adapters: dict[str, str], options: Any) -> Any:
    """The in-process engine for ``model_dir`` and its adapters (``options``: an ``EngineOptions``)."""
    settings: dict[str, Any] = {
        "device": options.device,
        "max_batch_size": options.max_batch_size,
        "max_model_len": options.max_model_len,
        "trust_remote_code": options.trust_remote_code,
    }
    if not is_vision_model(model_dir):
        from .hf import HFEngine

        return HFEngine(model_dir, served_name, adapters, **settings)
    from .hf_vlm import HFVisionEngine

    return HFVisionEngine(
        model_dir, served_name, adapters, allowed_local_media_path=options.allowed_local_media_path, **settings
    )


def honoured_fields(engine: Any) -> dict[str, set[str]]:
    """The request fields ``engine`` acts on: vision-language models take sampling settings only."""
    return VISION_FIELDS if getattr(engine, "accepts_images", False) else TEXT_FIELDS
