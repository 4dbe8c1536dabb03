"""What an uploaded adapter's weights are, read from safetensors headers alone (no torch, no pickle).

A safetensors file is an 8-byte little-endian header length, a JSON header naming every tensor's dtype,
shape and byte range, then the raw bytes. :func:`read_header` checks that structure; :func:`check_shapes`
compares each LoRA matrix with the weight of the served model it adapts, so an adapter of another model
(or a damaged one) is refused before anything is loaded.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from ..errors import SwiftModelError

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_HEADER_BYTES = 100 * 2**20
PEFT_PREFIX = "base_model.model."
LORA_PARTS = {"lora_A": "in", "lora_B": "out", "lora_embedding_A": "rows", "lora_embedding_B": "dim"}


def read_header(data: bytes, label: str) -> dict[str, list[int]]:
    """Tensor name -> shape of a safetensors file held in ``data``; a one-line error when it is not one."""
    if len(data) < 8:
        raise SwiftModelError(f"{label} is not a safetensors file (shorter than its header)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(MAX_HEADER_BYTES, len(data) - 8):
        raise SwiftModelError(f"{label} is not a safetensors file (its header length is past the end)")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        raise SwiftModelError(f"{label} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise SwiftModelError(f"{label} is not a safetensors file (its header is not an object)")
    body = len(data) - 8 - size
    shapes: dict[str, list[int]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shapes[name] = _checked_tensor(name, info, body, label)
    if not shapes:
        raise SwiftModelError(f"{label} holds no tensors")
    return shapes


def _checked_tensor(name: str, info: Any, body: int, label: str) -> list[int]:
    try:
        dtype, shape, (start, end) = info["dtype"], [int(n) for n in info["shape"]], info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise SwiftModelError(f"{label}: tensor {name[:80]} has no dtype, shape and offsets") from None
    width = DTYPE_BYTES.get(str(dtype))
    if width is None:
        raise SwiftModelError(f"{label}: tensor {name[:80]} has the unsupported dtype {str(dtype)[:20]}")
    if not (0 <= start <= end <= body) or end - start != width * math.prod(shape):
        raise SwiftModelError(f"{label}: tensor {name[:80]} lies outside the file or has the wrong size")
    return shape


def base_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Weight name -> shape of the served model (``model.safetensors`` or its shards), headers only."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise SwiftModelError(f"the served model at {model_dir} has no safetensors weights to check adapters against")
    shapes: dict[str, list[int]] = {}
    for file in files:
        with open(file, "rb") as fh:
            head = fh.read(8)
            (size,) = struct.unpack("<Q", head)
            header = json.loads(fh.read(size))
        shapes.update({k: [int(n) for n in v["shape"]] for k, v in header.items() if k != "__metadata__"})
    return shapes


def lora_ranks(shapes: dict[str, list[int]]) -> list[int]:
    """The rank of every LoRA pair (the inner dimension of its A matrix)."""
    return [shape[0] for name, shape in shapes.items() if ".lora_A." in name or ".lora_embedding_A." in name]


def check_shapes(adapter: dict[str, list[int]], base: dict[str, list[int]], served: str) -> None:
    """Each adapter tensor against the served model's weight it adapts; one line naming the first misfit."""
    for name, shape in adapter.items():
        problem = _misfit(name, shape, base)
        if problem:
            raise SwiftModelError(f"the adapter does not fit the served model {served}: {problem}")


def _misfit(name: str, shape: list[int], base: dict[str, list[int]]) -> str | None:
    path = name.removeprefix(PEFT_PREFIX)
    for part, side in LORA_PARTS.items():
        marker = f".{part}."
        if marker in path:
            module = path.split(marker)[0]
            weight = base.get(module + ".weight")
            if weight is None:
                return f"it adapts {module[:80]}, which the served model does not have"
            if len(shape) != 2 or len(weight) != 2:
                return f"{path[:80]} has shape {shape}"
            out_features, in_features = weight
            expected = {"in": shape[1] == in_features, "out": shape[0] == out_features,
                        "rows": shape[1] == out_features, "dim": shape[0] == in_features}[side]  # fmt: skip
            return None if expected else f"{path[:80]} has shape {shape}, the model's {module[:60]} is {weight}"
    weight = base.get(path) or base.get(path.replace(".modules_to_save.default", ""))
    if weight is None:
        return f"{path[:80]} is neither a LoRA matrix nor a weight of the served model"
    return None if weight == shape else f"{path[:80]} has shape {shape}, the model's is {weight}"
