"""Training memory from ``config.json`` alone: no weights are read or downloaded.

``estimate(model, method="lora", max_length=2048, batch_size=1)`` counts the parameters of a decoder
(Llama / Qwen2 / Mistral-style: attention with grouped KV heads, gated MLP, RMSNorm) and adds up, for
each method, the weights, LoRA parameters, gradients, optimizer states, activations (with or without
gradient checkpointing), logits and a CUDA overhead; it says whether each fits the current device.

Vision-language models (a ``vision_config``: Qwen2-VL / Qwen2.5-VL style patch-merging towers, LLaVA-style
CLIP / SigLIP towers with a projector) add their vision tower: its weights (kept in full precision by
QLoRA, frozen unless ``train_vision``), and the activations of ``images_per_row`` images of
``image_pixels`` pixels each (stored for backward only when the tower trains).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import SwiftConfigError
from ..model import LoraSpec
from .architecture import DEFAULT_IMAGE_PIXELS, Architecture, VisionTower, read_config, targets
from .plan import choose_dtype

GB = 1024**3
METHODS = ("lora", "qlora", "full")
NF4_BYTES = 0.5 + 0.5 / 64 * 1 / 4 + 4 / (64 * 256)  # 4-bit + fp8 absmax per 64 + fp32 per 256 blocks (double quant)
COMPUTE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
CUDA_CONTEXT_GB = 0.5  # CUDA context and cuBLAS workspace, not counted by torch.cuda.max_memory_allocated


@dataclass
class Estimate:
    """Memory needed to train a model with each method; ``total_gb`` is for ``method``."""

    model: str
    method: str
    params: int
    trainable: dict[str, int]
    breakdown: Any  # pandas DataFrame: rows = components, columns = methods (GiB)
    totals: dict[str, float]
    fits: dict[str, bool]
    device: str
    device_free_gb: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total_gb(self) -> float:
        return self.totals[self.method]

    def to_text(self) -> str:
        head = (
            f"{self.model}: {self.params / 1e9:.3f}B parameters; {self.settings_line()}\n"
            f"device {self.device} with {self.device_free_gb:.1f} GiB free\n"
        )
        table = self.breakdown.round(3).to_string()
        fits = "  ".join(f"{m}: {'fits' if ok else 'does NOT fit'}" for m, ok in self.fits.items())
        return head + table + "\n" + fits

    def settings_line(self) -> str:
        s = self.settings
        line = (
            f"max_length {s['max_length']}, batch {s['batch_size']}, LoRA r {s['lora_r']}, "
            f"gradient checkpointing {'on' if s['gradient_checkpointing'] else 'off'}, compute {s['dtype']}"
        )
        if "image_tokens" in s:
            line += (
                f"; {s['images_per_row']} image(s) a row of {s['image_pixels']:,} pixels = {s['image_tokens']} tokens "
                f"each, vision tower {'trained' if s['train_vision'] else 'frozen'}"
            )
        return line

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        table = self.breakdown.round(3).to_html(classes="km-estimate", border=0)
        fits = " · ".join(
            f"<b>{m}</b>: <span style='color:{'green' if ok else '#c00'}'>{'fits' if ok else 'does not fit'}</span>"
            for m, ok in self.fits.items()
        )
        return (
            f"<div class='km-estimate'><p><b>{self.model}</b>: {self.params / 1e9:.3f}B parameters; "
            f"{self.settings_line()}.<br>Device {self.device}: {self.device_free_gb:.1f} GiB free. "
            f"Estimate for <b>{self.method}</b>: <b>{self.total_gb:.2f} GiB</b>.</p>{table}<p>{fits}</p></div>"
        )


@dataclass(frozen=True)
class Workload:
    """What one training step holds besides the model: the batch, the adapters, the images per row."""

    max_length: int
    batch_size: int
    lora_r: int
    target_modules: list[str] | str | None
    gradient_checkpointing: bool
    images_per_row: int = 0
    image_pixels: int | None = None
    train_vision: bool = False

    @property
    def tokens(self) -> int:
        return self.max_length * self.batch_size


def _activation_bytes(arch: Architecture, work: Workload, compute_bytes: int, full: bool) -> float:
    """Activations the decoder blocks keep for backward (LoRA also keeps the inputs of its adapted linears)."""
    h, kv = arch.hidden_size, arch.num_kv_heads * arch.head_dim
    block_values = 6 * h + 2 * kv + 4 * arch.intermediate_size  # values per token stored by one block
    lora_inputs = sum(a for n, (a, _) in arch.linear_shapes().items() if n in targets(work.target_modules))
    per_block = block_values * compute_bytes + (0 if full else lora_inputs * compute_bytes)
    if work.gradient_checkpointing:
        return work.tokens * (arch.num_layers * h * compute_bytes + per_block)
    return work.tokens * arch.num_layers * per_block


def _optimizer_bytes(method: str, trainable: int, compute_bytes: int) -> float:
    if method == "full":
        return trainable * 2 * compute_bytes  # AdamW moments in the parameters' dtype
    if method == "qlora":
        return trainable * 2  # 8-bit AdamW: one byte per moment
    return trainable * 8


def _weight_bytes(method: str, arch: Architecture, vision_params: int, compute_bytes: int) -> float:
    if method == "qlora":  # the vision tower stays in full precision
        frozen_other = arch.embedding_params + arch.norm_params
        return arch.linear_params * NF4_BYTES + (frozen_other + vision_params) * compute_bytes
    return (arch.total_params + vision_params) * compute_bytes


def component_table(
    arch: Architecture, work: Workload, *, compute_bytes: int, cuda: bool, vision: VisionTower | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Bytes of each component for each method, and trainable parameters per method."""
    lora = arch.lora_params(work.lora_r, work.target_modules)
    logits_bytes = work.tokens * arch.vocab_size * (compute_bytes + 4 + 4)  # logits, fp32 upcast, its gradient
    vision_params = vision.params if vision else 0
    vision_lora = vision.lora_params(work.lora_r) if vision and work.train_vision else 0
    vision_acts = 0
    if vision and work.images_per_row:
        patches = vision.patches(work.image_pixels)
        per_image = vision.activation_values(patches, stored=work.train_vision)
        vision_acts = work.batch_size * work.images_per_row * per_image
    trainable_by_method = {
        "full": arch.total_params + (vision_params if work.train_vision else 0),
        "lora": lora + vision_lora,
        "qlora": lora + vision_lora,
    }
    out: dict[str, dict[str, float]] = {}
    for method in METHODS:
        full = method == "full"
        trainable = trainable_by_method[method]
        out[method] = {
            "weights": _weight_bytes(method, arch, vision_params, compute_bytes),
            "lora params": 0 if full else lora * 4,  # peft keeps adapters in fp32
            "gradients": trainable * (compute_bytes if full else 4),
            "optimizer states": _optimizer_bytes(method, trainable, compute_bytes),
            "activations": _activation_bytes(arch, work, compute_bytes, full),
            "logits + loss": logits_bytes,
            "CUDA overhead": CUDA_CONTEXT_GB * GB if cuda else 0.0,
        }
        if vision:
            out[method]["vision activations"] = vision_acts * compute_bytes
    return out, trainable_by_method


def estimate(
    model: Any = None,
    method: str = "lora",
    max_length: int = 2048,
    batch_size: int = 1,
    lora_r: int = LoraSpec.r,
    target_modules: list[str] | str | None = None,
    gradient_checkpointing: bool | None = None,
    device: str | None = None,
    dtype: str | None = None,
    image_pixels: int | None = None,
    images_per_row: int | None = None,
    train_vision: bool = False,
    num_processes: int = 1,
    strategy: str = "ddp",
) -> Estimate:
    """Estimate training memory for ``model`` from its config alone, for every method.

    ``model`` is a local folder, a hub id whose config is cached (or reachable), a catalog card / config
    dict, or ``"tiny"``. ``gradient_checkpointing`` defaults to on for CUDA, off elsewhere; ``dtype``
    (bf16 / fp16 / fp32) defaults to what training would use on ``device``. Vision-language models:
    ``image_pixels`` per image (``--max-pixels``; default 448x448), ``images_per_row`` (default 1) and
    ``train_vision`` (the tower trains: its gradients, optimizer states and activations count).
    ``num_processes`` and ``strategy`` ("ddp", "fsdp", "zero2", "zero3", "zero3-offload"): memory per device
    when that many processes share the run (FSDP / ZeRO-3 divide weights, gradients and optimizer states,
    ZeRO-2 gradients and optimizer states, ZeRO-3 offload keeps weights and optimizer states in CPU memory).
    """
    from ...config import settings
    from ...device import select_device

    if method not in METHODS:
        raise SwiftConfigError(f"method must be one of {', '.join(METHODS)}, got '{method}'")
    if max_length <= 0 or batch_size <= 0 or lora_r <= 0:
        raise SwiftConfigError("max_length, batch_size and lora_r must be positive")
    config, name = read_config(model if model is not None else settings.default_model)
    arch = Architecture.from_config(config, name)
    vision = VisionTower.from_config(config, arch.hidden_size)
    if images_per_row is None:
        images_per_row = 1 if vision else 0
    if images_per_row < 0 or (image_pixels is not None and image_pixels <= 0):
        raise SwiftConfigError("images_per_row must be >= 0 and image_pixels positive")
    info = select_device(device)
    cuda = info.type == "cuda"
    # "auto" per method as the plan decides it (on a CPU with native bf16: LoRA in bf16, full fine-tuning in fp32)
    dtypes = {m: dtype or choose_dtype("auto", info, [], m) for m in METHODS}
    if any(d not in COMPUTE_BYTES for d in dtypes.values()):
        raise SwiftConfigError(f"dtype must be bf16, fp16 or fp32, got '{dtype}'")
    work = Workload(
        max_length=max_length,
        batch_size=batch_size,
        lora_r=lora_r,
        target_modules=target_modules,
        gradient_checkpointing=cuda if gradient_checkpointing is None else gradient_checkpointing,
        images_per_row=images_per_row,
        image_pixels=image_pixels,
        train_vision=train_vision,
    )
    frame, trainable = _breakdown(arch, vision, work, dtypes, cuda, (strategy, num_processes))
    totals = {m: float(frame.loc["total", m]) for m in METHODS}
    return Estimate(
        model=name,
        method=method,
        params=arch.total_params + (vision.params if vision else 0),
        trainable=trainable,
        breakdown=frame,
        totals=totals,
        fits={m: totals[m] <= info.memory_free_gb * 0.95 for m in METHODS},
        device=info.torch_device,
        device_free_gb=info.memory_free_gb,
        settings=_settings_record(work, dtypes[method], vision, strategy, num_processes),
    )


def _breakdown(
    arch: Architecture,
    vision: VisionTower | None,
    work: Workload,
    dtypes: dict[str, str],
    cuda: bool,
    sharing: tuple[str, int],
) -> tuple[Any, dict[str, int]]:
    """GiB per component (rows, with a total) and method (columns), per device when ``sharing`` (strategy,
    processes) divides the run; and trainable parameters per method."""
    import pandas as pd

    from ..runtime.distributed import per_device

    tables = {
        d: component_table(arch, work, compute_bytes=COMPUTE_BYTES[d], cuda=cuda, vision=vision)
        for d in set(dtypes.values())
    }
    parts = {m: tables[dtypes[m]][0][m] for m in METHODS}
    trainable = next(iter(tables.values()))[1]
    strategy, num_processes = sharing
    frame = pd.DataFrame(per_device(parts, strategy, num_processes)) / GB
    frame.loc["total"] = frame.sum()
    frame.index.name = "GiB"
    return frame, trainable


def _settings_record(
    work: Workload, dtype: str, vision: VisionTower | None, strategy: str, num_processes: int
) -> dict[str, Any]:
    """The settings an estimate was made for (what its line and table say it assumed)."""
    record: dict[str, Any] = dict(
        max_length=work.max_length,
        batch_size=work.batch_size,
        lora_r=work.lora_r,
        target_modules=work.target_modules or "all-linear",
        gradient_checkpointing=work.gradient_checkpointing,
        dtype=dtype,
    )
    if num_processes > 1 or strategy != "ddp":
        record.update(num_processes=num_processes, strategy=strategy)
    if vision:
        record.update(
            images_per_row=work.images_per_row,
            image_pixels=work.image_pixels or DEFAULT_IMAGE_PIXELS,
            image_tokens=vision.image_tokens(work.image_pixels),
            train_vision=work.train_vision,
        )
    return record
