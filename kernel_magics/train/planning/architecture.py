"""What a model's ``config.json`` says about its size: the decoder (:class:`Architecture`) and a
vision-language model's tower (:class:`VisionTower`), read without weights for :mod:`.estimate`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import SwiftModelError

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


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
        names = targets(target_modules)
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


def targets(target_modules: list[str] | str | None) -> list[str]:
    if target_modules in (None, "all-linear", ["all-linear"]):
        return list(LINEAR_NAMES)
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return [n for n in names if n in LINEAR_NAMES]


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
    from ...hub import TINY_ALIASES, resolve_model
    from ...packaged import ALIASES as PACKAGED_ALIASES

    if name in TINY_ALIASES or name.lower() in PACKAGED_ALIASES:
        folder = resolve_model(name)
        return json.loads((folder / "config.json").read_text()), name
    try:
        from huggingface_hub import hf_hub_download

        from ...hub import is_offline

        try:  # the local cache first: no network for a model already at hand
            file = hf_hub_download(name, "config.json", local_files_only=True)
        except Exception:  # noqa: BLE001
            if is_offline():
                raise
            file = hf_hub_download(name, "config.json")
    except Exception:  # noqa: BLE001
        raise SwiftModelError(
            f"model '{name}': no config.json in the local cache and it cannot be fetched; "
            "pass a local folder, a config dict or a catalog card"
        ) from None
    return json.loads(Path(file).read_text()), name
