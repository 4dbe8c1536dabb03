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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SwiftConfigError, SwiftModelError

GB = 1024**3
METHODS = ("lora", "qlora", "full")
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NF4_BYTES = 0.5 + 0.5 / 64 * 1 / 4 + 4 / (64 * 256)  # 4-bit + fp8 absmax per 64 + fp32 per 256 blocks (double quant)
CUDA_CONTEXT_GB = 0.5  # CUDA context and cuBLAS workspace, not counted by torch.cuda.max_memory_allocated


@dataclass(frozen=True)
class Architecture:
    """The sizes that decide memory, read from a ``config.json``."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    attention_bias: bool

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "model") -> Architecture:
        cfg = config
        if isinstance(config.get("text_config"), dict) and "hidden_size" not in config:  # multimodal
            cfg = {**config, **config["text_config"]}
        try:
            hidden = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            layers = int(cfg["num_hidden_layers"])
            vocab = int(cfg["vocab_size"])
        except KeyError as exc:
            raise SwiftModelError(f"{name}: config.json has no {exc.args[0]}; cannot estimate its memory") from None
        head_dim = int(cfg.get("head_dim") or hidden // heads)
        model_type = str(cfg.get("model_type", ""))
        bias = bool(cfg.get("attention_bias", model_type.startswith("qwen2")))
        return cls(
            name=name,
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=int(cfg.get("intermediate_size") or 4 * hidden),
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=head_dim,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=bias,
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder block."""
        h, d, i = self.hidden_size, self.head_dim, self.intermediate_size
        return {
            "q_proj": (h, self.num_heads * d),
            "k_proj": (h, self.num_kv_heads * d),
            "v_proj": (h, self.num_kv_heads * d),
            "o_proj": (self.num_heads * d, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder blocks' linear layers (what 4-bit quantizes)."""
        per_layer = sum(a * b for a, b in self.linear_shapes().values())
        if self.attention_bias:
            per_layer += (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        return per_layer * self.num_layers

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def norm_params(self) -> int:
        return self.hidden_size * (2 * self.num_layers + 1)

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params

    def lora_params(self, r: int, target_modules: list[str] | str | None) -> int:
        names = _targets(target_modules)
        per_layer = sum(r * (a + b) for n, (a, b) in self.linear_shapes().items() if n in names)
        return per_layer * self.num_layers


@dataclass(frozen=True)
class VisionTower:
    """The sizes of a vision tower and its projector into the language model, from ``vision_config``."""

    width: int
    depth: int
    mlp: int
    gated_mlp: bool
    layer_norm_bias: bool
    patch_size: int
    temporal_patch: int
    in_channels: int
    merge: int  # patches merged into one language-model token per side (Qwen2-VL: 2, LLaVA: 1)
    out: int  # the language model's hidden size
    image_size: int | None  # fixed input size with learned position embeddings (CLIP / SigLIP)

    @classmethod
    def from_config(cls, config: dict[str, Any], text_hidden: int) -> VisionTower | None:
        vision = config.get("vision_config")
        if not isinstance(vision, dict):
            return None
        width = int(vision.get("embed_dim") or vision["hidden_size"])
        out = int(vision.get("out_hidden_size") or (vision["hidden_size"] if "embed_dim" in vision else text_hidden))
        mlp = int(vision.get("intermediate_size") or width * float(vision.get("mlp_ratio", 4)))
        model_type = str(vision.get("model_type", ""))
        gated = "qwen2_5" in model_type or ("out_hidden_size" in vision and "intermediate_size" in vision)
        size = vision.get("image_size")
        return cls(
            width=width,
            depth=int(vision.get("depth") or vision.get("num_hidden_layers") or 0),
            mlp=mlp,
            gated_mlp=gated,
            layer_norm_bias=not gated,  # Qwen2.5-VL uses RMSNorm, the others LayerNorm
            patch_size=int(vision.get("patch_size", 14)),
            temporal_patch=int(vision.get("temporal_patch_size") or 1),
            in_channels=int(vision.get("in_channels") or vision.get("num_channels") or 3),
            merge=int(vision.get("spatial_merge_size") or 1),
            out=out,
            image_size=int(size) if size else None,
        )

    @property
    def params(self) -> int:
        e, m, norms = self.width, self.mlp, 2 if self.layer_norm_bias else 1
        patch = self.in_channels * self.temporal_patch * self.patch_size**2 * e
        block = 4 * e * e + 4 * e + (3 * e * m + 2 * m + e if self.gated_mlp else 2 * e * m + m + e) + 2 * norms * e
        if self.merge > 1:  # norm + 2-layer MLP over merge x merge patches
            merged = e * self.merge**2
            projector = norms * e + merged * merged + merged + merged * self.out + self.out
            embeddings = 0
        else:  # CLIP / SigLIP: class + position embeddings, pre/post norms; 2-layer projector
            embeddings = e + ((self.image_size or 336) // self.patch_size) ** 2 * e + e + 2 * norms * e
            projector = e * self.out + self.out + self.out * self.out + self.out
        return patch + embeddings + self.depth * block + projector

    def patches(self, image_pixels: int | None) -> int:
        """Patches the tower sees for one image of ``image_pixels`` pixels (fixed-size towers: their size)."""
        if self.image_size and self.merge == 1:
            return (self.image_size // self.patch_size) ** 2
        pixels = image_pixels or DEFAULT_IMAGE_PIXELS
        unit = (self.patch_size * self.merge) ** 2
        return max(1, pixels // unit) * self.merge**2

    def image_tokens(self, image_pixels: int | None) -> int:
        """Language-model tokens one image becomes."""
        return self.patches(image_pixels) // self.merge**2

    def lora_params(self, r: int) -> int:
        """LoRA on every linear layer of the tower's blocks (``train_vision`` with LoRA)."""
        e, m = self.width, self.mlp
        per_block = r * ((e + 3 * e) + (e + e) + (3 if self.gated_mlp else 2) * (e + m))
        return per_block * self.depth

    def activation_values(self, patches: int, stored: bool) -> int:
        """Values kept per image: every block's (``stored``, the tower trains) or one block's at a time."""
        per_block = patches * (6 * self.width + 4 * self.mlp)
        return per_block * (self.depth if stored else 1)


DEFAULT_IMAGE_PIXELS = 448 * 448  # what the estimate assumes without --max-pixels


def _targets(target_modules: list[str] | str | None) -> list[str]:
    if target_modules in (None, "all-linear", ["all-linear"]):
        return list(LINEAR_NAMES)
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return [n for n in names if n in LINEAR_NAMES]


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


def read_config(model: Any) -> tuple[dict[str, Any], str]:
    """``config.json`` of a local folder, a cached hub id, a catalog card or a config dict (no weights)."""
    if isinstance(model, dict):
        card = model
        config = card.get("config") if isinstance(card.get("config"), dict) else card
        return config, str(card.get("id") or card.get("name") or card.get("_name_or_path") or "model")
    if hasattr(model, "to_dict") and hasattr(model, "model_type"):  # a transformers PretrainedConfig
        return model.to_dict(), str(getattr(model, "_name_or_path", "") or model.model_type)
    name = str(model)
    path = Path(name).expanduser()
    if path.is_file() and path.name.endswith(".json"):
        return json.loads(path.read_text()), path.parent.name
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SwiftModelError(f"model folder {path} has no config.json; cannot estimate its memory")
        return json.loads((path / "config.json").read_text()), path.name
    from ..hub import TINY_ALIASES, resolve_model
    from ..packaged import ALIASES as PACKAGED_ALIASES

    if name in TINY_ALIASES or name.lower() in PACKAGED_ALIASES:
        folder = resolve_model(name)
        return json.loads((folder / "config.json").read_text()), name
    try:
        from huggingface_hub import hf_hub_download

        from ..hub import is_offline

        file = hf_hub_download(name, "config.json", local_files_only=is_offline())
    except Exception:  # noqa: BLE001
        raise SwiftModelError(
            f"model '{name}': no config.json in the local cache and it cannot be fetched; "
            "pass a local folder, a config dict or a catalog card"
        ) from None
    return json.loads(Path(file).read_text()), name


def component_table(
    arch: Architecture,
    *,
    max_length: int,
    batch_size: int,
    lora_r: int,
    target_modules: list[str] | str | None,
    gradient_checkpointing: bool,
    compute_bytes: int,
    cuda: bool,
    vision: VisionTower | None = None,
    images_per_row: int = 0,
    image_pixels: int | None = None,
    train_vision: bool = False,
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Bytes of each component for each method, and trainable parameters per method."""
    tokens = max_length * batch_size
    h, i_size, L, V = arch.hidden_size, arch.intermediate_size, arch.num_layers, arch.vocab_size
    kv = arch.num_kv_heads * arch.head_dim
    lora = arch.lora_params(lora_r, target_modules)
    # activations stored by one decoder block for backward, in values per token
    block_values = 6 * h + 2 * kv + 4 * i_size
    lora_inputs = sum(a for n, (a, _) in arch.linear_shapes().items() if n in _targets(target_modules))
    logits_bytes = tokens * V * (compute_bytes + 4 + 4)  # logits, fp32 upcast for the loss, its gradient
    vision_params = vision.params if vision else 0
    vision_lora = vision.lora_params(lora_r) if vision and train_vision else 0
    vision_acts = 0
    if vision and images_per_row:
        patches = vision.patches(image_pixels)
        vision_acts = batch_size * images_per_row * vision.activation_values(patches, stored=train_vision)
    trainable_by_method = {
        "full": arch.total_params + (vision_params if train_vision else 0),
        "lora": lora + vision_lora,
        "qlora": lora + vision_lora,
    }
    out: dict[str, dict[str, float]] = {}
    for method in METHODS:
        frozen_other = arch.embedding_params + arch.norm_params
        if method == "qlora":  # the vision tower stays in full precision
            weights = arch.linear_params * NF4_BYTES + (frozen_other + vision_params) * compute_bytes
        else:
            weights = (arch.total_params + vision_params) * compute_bytes
        trainable = trainable_by_method[method]
        lora_bytes = 0 if method == "full" else lora * 4  # peft keeps adapters in fp32
        grads = trainable * (compute_bytes if method == "full" else 4)
        if method == "full":
            optim = trainable * 2 * compute_bytes  # AdamW moments in the parameters' dtype
        elif method == "qlora":
            optim = trainable * 2  # 8-bit AdamW: one byte per moment
        else:
            optim = trainable * 8
        per_block = block_values * compute_bytes + (0 if method == "full" else lora_inputs * compute_bytes)
        if gradient_checkpointing:
            acts = tokens * (L * h * compute_bytes + per_block)
        else:
            acts = tokens * L * per_block
        out[method] = {
            "weights": weights,
            "lora params": lora_bytes,
            "gradients": grads,
            "optimizer states": optim,
            "activations": acts,
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
    lora_r: int = 64,
    target_modules: list[str] | str | None = None,
    gradient_checkpointing: bool | None = None,
    device: str | None = None,
    dtype: str | None = None,
    image_pixels: int | None = None,
    images_per_row: int | None = None,
    train_vision: bool = False,
) -> Estimate:
    """Estimate training memory for ``model`` from its config alone, for every method.

    ``model`` is a local folder, a hub id whose config is cached (or reachable), a catalog card / config
    dict, or ``"tiny"``. ``gradient_checkpointing`` defaults to on for CUDA, off elsewhere; ``dtype``
    (bf16 / fp16 / fp32) defaults to what training would use on ``device``. Vision-language models:
    ``image_pixels`` per image (``--max-pixels``; default 448x448), ``images_per_row`` (default 1) and
    ``train_vision`` (the tower trains: its gradients, optimizer states and activations count).
    """
    import pandas as pd

    from ..config import settings
    from ..device import select_device

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
    dtype = dtype or ("bf16" if info.bf16 else "fp32")
    compute_bytes = {"bf16": 2, "fp16": 2, "fp32": 4}.get(dtype)
    if compute_bytes is None:
        raise SwiftConfigError(f"dtype must be bf16, fp16 or fp32, got '{dtype}'")
    if gradient_checkpointing is None:
        gradient_checkpointing = cuda
    parts, trainable = component_table(
        arch,
        max_length=max_length,
        batch_size=batch_size,
        lora_r=lora_r,
        target_modules=target_modules,
        gradient_checkpointing=gradient_checkpointing,
        compute_bytes=compute_bytes,
        cuda=cuda,
        vision=vision,
        images_per_row=images_per_row,
        image_pixels=image_pixels,
        train_vision=train_vision,
    )
    frame = pd.DataFrame(parts) / GB
    frame.loc["total"] = frame.sum()
    totals = {m: float(frame.loc["total", m]) for m in METHODS}
    fits = {m: totals[m] <= info.memory_free_gb * 0.95 for m in METHODS}
    frame.index.name = "GiB"
    return Estimate(
        model=name,
        method=method,
        params=arch.total_params + (vision.params if vision else 0),
        trainable=trainable,
        breakdown=frame,
        totals=totals,
        fits=fits,
        device=info.torch_device,
        device_free_gb=info.memory_free_gb,
        settings=dict(
            max_length=max_length,
            batch_size=batch_size,
            lora_r=lora_r,
            target_modules=target_modules or "all-linear",
            gradient_checkpointing=gradient_checkpointing,
            dtype=dtype,
            **(
                {
                    "images_per_row": images_per_row,
                    "image_pixels": image_pixels or DEFAULT_IMAGE_PIXELS,
                    "image_tokens": vision.image_tokens(image_pixels),
                    "train_vision": train_vision,
                }
                if vision
                else {}
            ),
        ),
    )
