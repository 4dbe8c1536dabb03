"""GPTQ and AWQ 4-bit export (CUDA only), calibrated on rows of the user's own dataset.

GPTQ uses ``gptqmodel`` when installed, else ``llm-compressor``; AWQ uses ``llm-compressor``. Both run their quantization kernels on a
CUDA GPU, so on other machines the export stops at once with one line saying so. The folder they
write is served by vLLM (``%swift serve --model OUT --backend vllm``) and loads in transformers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..errors import SwiftConfigError, SwiftDeviceError, SwiftModelError
from .loading import is_quantized_folder, load_tokenizer, quiet_loading
from .rows import load_rows, render_text, select_rows, to_examples, uses_template


def require_cuda(method: str) -> str:
    """The CUDA device to quantize on, or a :class:`SwiftDeviceError` naming what works here instead."""
    from ..device import select_device

    info = select_device()
    if info.type != "cuda":
        raise SwiftDeviceError(
            f"{method.upper()} export needs a CUDA GPU (gptqmodel / llm-compressor kernels are CUDA-only) and this "
            f"machine has {info.type}; export format='gguf' (outtype q8_0 or q4_0) or 'bnb-4bit' here instead"
        )
    return info.torch_device


def calibration_texts(model_dir: Path, dataset: Any, samples: int) -> list[str]:
    """``samples`` rows of ``dataset`` rendered as text the way the model sees them (chat template)."""
    if dataset is None:
        raise SwiftConfigError(
            f"GPTQ/AWQ export needs calibration data: pass dataset=... (your training data; {samples} rows are used)"
        )
    if samples < 1:
        raise SwiftConfigError(f"calib_samples must be >= 1, got {samples}")
    tokenizer = load_tokenizer(model_dir)
    rows = select_rows(load_rows(dataset), limit=samples)
    template = uses_template(tokenizer, None)
    return [render_text(tokenizer, ex, template) for ex in to_examples(rows)]


def write_quantized(
    model_dir: Path,
    staging: Path,
    method: str,
    dataset: Any,
    bits: int = 4,
    group_size: int = 128,
    calib_samples: int = 128,
) -> dict[str, Any]:
    """Quantize ``model_dir`` with GPTQ or AWQ into ``staging``; returns details for the report."""
    if method not in ("gptq", "awq"):
        raise SwiftConfigError(f"unknown quantization method '{method}'; use gptq or awq")
    if bits not in (4, 8):
        raise SwiftConfigError(f"{method.upper()} bits must be 4 or 8, got {bits}")
    device = require_cuda(method)
    if is_quantized_folder(model_dir):
        raise SwiftModelError(f"{model_dir} is already quantized; export the unquantized (merged) model")
    texts = calibration_texts(model_dir, dataset, calib_samples)
    has_gptqmodel = importlib.util.find_spec("gptqmodel") is not None
    has_llmcompressor = importlib.util.find_spec("llmcompressor") is not None
    if method == "gptq" and has_gptqmodel:
        _gptqmodel(model_dir, staging, texts, bits, group_size)
        backend = "gptqmodel"
    elif has_llmcompressor:
        _llmcompressor(model_dir, staging, texts, method, bits, device)
        backend = "llm-compressor"
    elif method == "gptq":
        raise SwiftConfigError(
            "GPTQ export needs gptqmodel or llm-compressor: pip install gptqmodel (or llmcompressor)"
        )
    else:
        raise SwiftConfigError("AWQ export needs llm-compressor: pip install llmcompressor")
    load_tokenizer(model_dir).save_pretrained(staging)
    return {
        "method": method,
        "bits": bits,
        "group_size": group_size,
        "calibration_rows": len(texts),
        "backend": backend,
    }


def _gptqmodel(model_dir: Path, staging: Path, texts: list[str], bits: int, group_size: int) -> None:
    from gptqmodel import GPTQModel, QuantizeConfig

    with quiet_loading():
        model = GPTQModel.load(str(model_dir), QuantizeConfig(bits=bits, group_size=group_size))
        model.quantize(texts, batch_size=1)
        model.save(str(staging))


def _llmcompressor(model_dir: Path, staging: Path, texts: list[str], method: str, bits: int, device: str) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    try:
        from llmcompressor import oneshot
    except ImportError:  # releases before 0.6 kept it under transformers
        from llmcompressor.transformers import oneshot

    tokenizer = load_tokenizer(model_dir)
    scheme = f"W{bits}A16"
    if method == "awq":
        from llmcompressor.modifiers.awq import AWQModifier

        recipe = [AWQModifier(targets=["Linear"], scheme=f"{scheme}_ASYM", ignore=["lm_head"])]
    else:
        from llmcompressor.modifiers.quantization import GPTQModifier

        recipe = [GPTQModifier(targets="Linear", scheme=scheme, ignore=["lm_head"])]
    max_len = 2048
    data = Dataset.from_dict({"text": texts}).map(
        lambda row: tokenizer(row["text"], truncation=True, max_length=max_len, add_special_tokens=False),
        remove_columns=["text"],
    )
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map=device)
    oneshot(model=model, dataset=data, recipe=recipe, max_seq_length=max_len, num_calibration_samples=len(texts))
    model.save_pretrained(staging, save_compressed=True)
