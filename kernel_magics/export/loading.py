"""Turning what the user names (a model, an adapter folder, a run) into loaded models.

A *model spec* is anything :func:`kernel_magics.hub.resolve_model` accepts (``"tiny"``, a folder, a hub
id), a LoRA adapter folder (its base is read from ``adapter_config.json``), an object with an
``adapter_dir`` attribute (a training run), or a ``(base, adapter)`` pair. Models are always loaded
unquantized here: merging or evaluating through 4-bit weights would change the numbers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters import ADAPTER_CONFIG, base_mismatch, read_json, recorded_base
from ..errors import SwiftConfigError, SwiftModelError

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
DTYPE_CHOICES = ("float32", "bfloat16", "float16", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: the base folder, an optional adapter folder and a short label."""

    base: Path
    adapter: Path | None
    label: str

    @property
    def source(self) -> str:
        return f"{self.base} + {self.adapter}" if self.adapter else str(self.base)


def adapter_path(adapter: Any) -> Path:
    """The folder of a LoRA adapter given as a path or as an object with ``adapter_dir`` (a run)."""
    value = getattr(adapter, "adapter_dir", adapter)
    if value is None:
        raise SwiftModelError("this run has no adapter yet (adapter_dir is None); wait for it to finish training")
    path = Path(os.fspath(value)).expanduser()
    if not (path / ADAPTER_CONFIG).is_file():
        where = "does not exist" if not path.exists() else f"has no {ADAPTER_CONFIG}"
        raise SwiftModelError(f"adapter folder {path} {where}; pass the folder a LoRA run saved (runs/<id>/adapter)")
    return path


def is_adapter(value: Any) -> bool:
    """True for a run object or a folder that holds ``adapter_config.json``."""
    if hasattr(value, "adapter_dir"):
        return True
    if isinstance(value, (str, os.PathLike)):
        return (Path(os.fspath(value)).expanduser() / ADAPTER_CONFIG).is_file()
    return False


def resolve_base(base: Any, adapter: Path | None) -> Path:
    """Find the base folder: ``base`` when given, else the base recorded in the adapter."""
    from ..hub import resolve_model

    if base is None and adapter is not None:
        name = recorded_base(adapter)
        if name is None:
            raise SwiftModelError(f"adapter {adapter} does not record its base model; pass base=... (e.g. 'tiny')")
        try:
            return resolve_model(name, allow_download=False)
        except SwiftModelError:
            raise SwiftModelError(
                f"adapter {adapter} was trained on '{name}', which is not on this machine; pass base=... "
                "pointing at that model's folder"
            ) from None
    return resolve_model(None if base is None else os.fspath(base))


def is_quantized_folder(folder: Path) -> bool:
    """Does this model folder hold bitsandbytes / GPTQ / AWQ weights (``quantization_config``)?"""
    return bool(read_json(folder / "config.json").get("quantization_config"))


def check_adapter_matches(base: Path, adapter: Path) -> None:
    """Raise :class:`SwiftModelError` when ``adapter`` was trained on a model unlike ``base`` (the configs are
    compared on :data:`kernel_magics.adapters.BASE_FIELDS`; shapes are checked again when the weights load)."""
    mismatch = base_mismatch(adapter, base)
    if mismatch is not None:
        raise SwiftModelError(
            f"adapter {adapter} was trained on '{mismatch.trained_on}' ({mismatch.field}={mismatch.theirs}) but "
            f"the base given is {base} ({mismatch.field}={mismatch.ours}); pass the base the adapter was trained on"
        )


def torch_dtype(dtype: str | None, default: str = "float32") -> Any:
    """``"bf16"`` -> ``torch.bfloat16`` (None -> ``default``)."""
    import torch

    name = _DTYPES.get(str(dtype or default).lower().replace("torch.", ""))
    if name is None:
        raise SwiftConfigError(f"dtype '{dtype}' is not one of {', '.join(DTYPE_CHOICES)}")
    return getattr(torch, name)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-file progress bars while a tiny model loads (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_tokenizer(base: Path, adapter: Path | None = None) -> Any:
    """The tokenizer saved with the adapter (training may have changed it), else the base's."""
    from transformers import AutoTokenizer

    from ..config import settings

    source = adapter if adapter is not None and (adapter / "tokenizer_config.json").is_file() else base
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=settings.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise SwiftModelError(f"cannot load the tokenizer of {source}: {exc}".splitlines()[0]) from None


def load_base_model(base: Path, dtype: Any, device: str = "cpu") -> Any:
    """Load ``base`` unquantized in ``dtype`` on ``device``; refuse 4-bit / 8-bit folders."""
    from transformers import AutoModelForCausalLM

    from ..config import settings

    if is_quantized_folder(base):
        method = read_json(base / "config.json")["quantization_config"].get("quant_method", "quantized")
        raise SwiftModelError(
            f"base {base} holds {method} weights; merging or evaluating an adapter needs the unquantized base "
            "(the model the 4-bit copy was made from)"
        )
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(
                base,
                dtype=dtype,
                device_map=None if device == "cpu" else device,
                trust_remote_code=settings.trust_remote_code,
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise SwiftModelError(f"cannot load model {base}: {exc}".splitlines()[0]) from None
    return model


def attach_adapter(model: Any, adapter: Path) -> Any:
    """Wrap ``model`` in a PeftModel with ``adapter``; shape mismatches become one line."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[0] if first else "")
        raise SwiftModelError(
            f"adapter {adapter} does not fit base {model.name_or_path}: {detail[:200]}; pass the base it was trained on"
        ) from None


def resolve_spec(spec: Any, label: str | None = None) -> ModelSpec:
    """A model spec (name, folder, adapter folder, run or ``(base, adapter)`` pair) -> :class:`ModelSpec`."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise SwiftConfigError(f"a model pair must be (base, adapter), got {len(spec)} items")
        base_value, adapter_value = spec
        adapter = adapter_path(adapter_value) if adapter_value is not None else None
        base = resolve_base(base_value, adapter)
    elif is_adapter(spec):
        adapter = adapter_path(spec)
        base = resolve_base(None, adapter)
    else:
        adapter = None
        base = resolve_base(spec, None)
    if adapter is not None:
        check_adapter_matches(base, adapter)
    return ModelSpec(base, adapter, label or default_label(spec, base, adapter))


def default_label(spec: Any, base: Path, adapter: Path | None) -> str:
    if adapter is not None:
        name = getattr(spec, "run_id", None) or getattr(spec, "name", None)
        if isinstance(name, str) and name:
            return name
        return adapter.parent.name if adapter.name in ("adapter", "final") else adapter.name
    if isinstance(spec, str) and not Path(spec).expanduser().exists():
        return spec
    return base.name


def load_for_inference(spec: ModelSpec, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) for a :class:`ModelSpec`; adapters stay unmerged (exact)."""
    import torch

    model = load_base_model(spec.base, dtype or torch.float32, device)
    if spec.adapter is not None:
        model = attach_adapter(model, spec.adapter)
    model.eval()
    tokenizer = load_tokenizer(spec.base, spec.adapter)
    return model, tokenizer


def inference_device() -> tuple[str, Any]:
    """(torch device string, dtype) for evaluation: the selected device, fp32 on CPU, bf16 on CUDA."""
    import torch

    from ..device import select_device

    info = select_device()
    if info.type == "cuda":
        return info.torch_device, torch.bfloat16 if info.bf16 else torch.float16
    return info.torch_device, torch.float32


def model_specs(models: Any, adapter: Any = None) -> list[ModelSpec]:
    """One :class:`ModelSpec` per model: a single spec, a list of specs, a dict label -> spec, or
    ``"LABEL=SPEC"`` strings (command line)."""
    if isinstance(models, dict):
        return [resolve_spec(spec, str(label)) for label, spec in models.items()]
    if adapter is not None:
        return [resolve_spec((models, adapter))]
    items = list(models) if isinstance(models, list) else [models]
    specs = []
    for item in items:
        label = None
        if isinstance(item, str) and "=" in item and not item.startswith(("/", ".", "~")):
            label, _, item = item.partition("=")
            label, item = label.strip(), item.strip()
        specs.append(resolve_spec(item, label))
    seen: dict[str, int] = {}
    unique = []
    for spec in specs:
        count = seen.get(spec.label, 0)
        seen[spec.label] = count + 1
        unique.append(ModelSpec(spec.base, spec.adapter, f"{spec.label}-{count + 1}") if count else spec)
    return unique
