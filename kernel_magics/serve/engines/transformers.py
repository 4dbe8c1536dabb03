"""The transformers engine's registry entry: text models get :class:`~.hf.HFEngine`, vision-language models
:class:`~.hf_vlm.HFVisionEngine` (same scheduler, image-aware prompts). It serves every model on every
device, so ``backend="auto"`` falls back to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import SwiftConfigError
from ...hub import is_vision_model


def unavailable(device: Any, model_dir: Path, auto: bool = False) -> str | None:
    """Never: transformers and peft are the project's own dependencies."""
    return None


def create(model_dir: Path, served_name: str, adapters: dict[str, str], options: Any) -> Any:
    """The in-process engine for ``model_dir`` and its adapters (``options``: an ``EngineOptions``)."""
    if options.engine_args:
        raise SwiftConfigError(
            f"engine_args are passed to vLLM only; the transformers engine got {sorted(options.engine_args)}"
        )
    if is_vision_model(model_dir):
        from .hf_vlm import HFVisionEngine as engine_class
    else:
        from .hf import HFEngine as engine_class
    return engine_class(
        model_dir,
        served_name,
        adapters,
        device=options.device,
        max_batch_size=options.max_batch_size,
        max_model_len=options.max_model_len,
        trust_remote_code=options.trust_remote_code,
    )
