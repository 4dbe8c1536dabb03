"""Saving a bitsandbytes 4-bit (NF4) copy of a model folder.

The folder reloads with plain ``AutoModelForCausalLM.from_pretrained(out_dir)`` (the quantization
settings travel in ``config.json``) on CUDA and, with bitsandbytes >= 0.48, on the CPU. It is a way to
ship a smaller model for QLoRA-style fine-tuning or low-memory inference; for llama.cpp / Ollama use
GGUF instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import SwiftConfigError, SwiftDeviceError, SwiftModelError
from .loading import is_quantized_folder, load_tokenizer, quiet_loading


def write_bnb_4bit(model_dir: Path, staging: Path, quant_type: str = "nf4", device: str = "cpu") -> dict[str, Any]:
    """Quantize ``model_dir`` to 4-bit with bitsandbytes and save it into ``staging``; returns details."""
    import torch

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise SwiftConfigError("bnb-4bit export needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if quant_type not in ("nf4", "fp4"):
        raise SwiftConfigError(f"bnb-4bit quant_type '{quant_type}' is not one of nf4, fp4")
    if is_quantized_folder(model_dir):
        raise SwiftModelError(f"{model_dir} is already quantized; export the unquantized model")
    if device.startswith("mps"):
        raise SwiftDeviceError("bitsandbytes 4-bit does not run on Apple MPS; export on the CPU (device='cpu')")
    compute = torch.bfloat16 if device.startswith("cuda") else torch.float32
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=torch.uint8,
    )
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, quantization_config=config, device_map=device, dtype=compute
            )
            model.save_pretrained(staging)
    except (OSError, ValueError, RuntimeError) as exc:
        raise SwiftModelError(f"bitsandbytes 4-bit export of {model_dir} failed: {exc}".splitlines()[0]) from None
    load_tokenizer(model_dir).save_pretrained(staging)
    if (model_dir / "generation_config.json").is_file():
        shutil.copyfile(model_dir / "generation_config.json", staging / "generation_config.json")
    linear4 = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    return {"quant_type": quant_type, "double_quant": True, "linear_4bit_layers": linear4}
