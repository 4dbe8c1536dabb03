"""km.estimate: parameter counts of real architectures from config.json alone, and a sane breakdown."""

from __future__ import annotations

import json

import pytest

from kernel_magics.errors import SwiftConfigError, SwiftModelError
from kernel_magics.train.planning.estimate import estimate

CONFIGS = {
    "Qwen2.5-0.5B": (
        {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
        },
        0.494e9,
    ),
    "Qwen2.5-1.5B": (
        {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "tie_word_embeddings": True,
        },
        1.54e9,
    ),
    "Llama-3.2-1B": (
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "vocab_size": 128256,
            "attention_bias": False,
            "tie_word_embeddings": True,
        },
        1.24e9,
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameter_count_of_real_architectures_from_config_only(tmp_path, name):
    config, known = CONFIGS[name]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))  # no weights in the folder
    est = estimate(str(folder), method="lora", max_length=1024, device="cpu")
    assert abs(est.params - known) / known < 0.02, est.params
    frame = est.breakdown
    assert list(frame.columns) == ["lora", "qlora", "full"]
    for part in ("weights", "lora params", "gradients", "optimizer states", "activations", "total"):
        assert part in frame.index
    # 4-bit weights are ~1/4 to 1/2 of fp weights (embeddings stay in the compute dtype); full needs the most
    assert frame.loc["weights", "qlora"] < 0.6 * frame.loc["weights", "lora"]
    assert est.totals["qlora"] < est.totals["lora"] < est.totals["full"]
    # full fine-tuning in fp32 on the CPU: weights 4 + grads 4 + AdamW 8 bytes per parameter
    assert frame.loc["optimizer states", "full"] == pytest.approx(2 * frame.loc["weights", "full"])
    assert set(est.fits) == {"lora", "qlora", "full"}
    assert est.total_gb == est.totals["lora"]
    assert "GiB" in est._repr_html_() and name in est.to_text()


def test_card_dict_and_lora_param_formula():
    config, _ = CONFIGS["Qwen2.5-0.5B"]
    est = estimate(
        {"id": "Qwen/Qwen2.5-0.5B-Instruct", "config": config}, lora_r=8, target_modules=["q_proj", "v_proj"]
    )
    # r * (in + out) per module: q 896->896, v 896->128, 24 layers
    assert est.trainable["lora"] == 24 * 8 * ((896 + 896) + (896 + 128))
    assert est.model == "Qwen/Qwen2.5-0.5B-Instruct"


def test_gradient_checkpointing_and_length_scale_activations():
    config, _ = CONFIGS["Llama-3.2-1B"]
    card = {"config": config}
    short = estimate(card, max_length=512, gradient_checkpointing=False)
    long = estimate(card, max_length=2048, gradient_checkpointing=False)
    ckpt = estimate(card, max_length=2048, gradient_checkpointing=True)
    acts = "activations"
    assert long.breakdown.loc[acts, "lora"] == pytest.approx(4 * short.breakdown.loc[acts, "lora"])
    assert ckpt.breakdown.loc[acts, "lora"] < 0.25 * long.breakdown.loc[acts, "lora"]


def test_tiny_model_estimate_and_errors(tiny_model, tmp_path):
    est = estimate(str(tiny_model), method="full", max_length=256)
    assert 0.1e6 < est.params < 1e6 and est.fits["full"]
    with pytest.raises(SwiftConfigError, match="method must be one of"):
        estimate(str(tiny_model), method="dora")
    with pytest.raises(SwiftModelError, match="no config.json"):
        estimate(str(tmp_path))
    with pytest.raises(SwiftModelError, match="no config.json in the local cache"):
        estimate("no-such-org/no-such-model")


def test_estimate_subcommand_parses_and_runs(tiny_model):
    from kernel_magics import cli

    call = cli.parse(f"estimate {tiny_model} --method qlora --max-length 512 --batch-size 2")
    result = call.run()
    assert result.method == "qlora" and result.settings["max_length"] == 512 and result.settings["batch_size"] == 2


# -- vision-language models ------------------------------------------------------------------------
def _vlm_configs():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, Qwen2_5_VLConfig, Qwen2VLConfig

    qwen_text = dict(num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
    return {
        "Qwen2-VL-2B": Qwen2VLConfig(
            vision_config=dict(
                depth=32,
                embed_dim=1280,
                mlp_ratio=4,
                num_heads=16,
                hidden_size=1536,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
            ),
            text_config=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, **qwen_text),
            tie_word_embeddings=True,
        ),
        "Qwen2.5-VL-3B": Qwen2_5_VLConfig(
            vision_config=dict(
                depth=32,
                hidden_size=1280,
                intermediate_size=3420,
                out_hidden_size=2048,
                num_heads=16,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                fullatt_block_indexes=[7, 15, 23, 31],
            ),
            text_config=dict(
                hidden_size=2048,
                intermediate_size=11008,
                num_hidden_layers=36,
                **{**qwen_text, "num_attention_heads": 16},
            ),
            tie_word_embeddings=True,
        ),
        "LLaVA-1.5-7B": LlavaConfig(
            vision_config=CLIPVisionConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=24,
                num_attention_heads=16,
                patch_size=14,
                image_size=336,
            ),
            text_config=LlamaConfig(
                hidden_size=4096,
                intermediate_size=11008,
                num_hidden_layers=32,
                num_attention_heads=32,
                vocab_size=32064,
            ),
        ),
    }


@pytest.mark.parametrize("name", ["Qwen2-VL-2B", "Qwen2.5-VL-3B", "LLaVA-1.5-7B"])
def test_vision_language_parameter_count_matches_the_model(name):
    """Counted from config.json alone; the oracle is the model built on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForImageTextToText

    config = _vlm_configs()[name]
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    real = sum(p.numel() for p in model.parameters())
    est = estimate(config.to_dict(), device="cpu")
    assert est.params == real, f"{name}: estimate {est.params:,} vs model {real:,}"
    assert "vision activations" in est.breakdown.index


def test_tiny_vlm_counts_and_image_tokens(tmp_path):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from kernel_magics.testing_vlm import make_tiny_vlm

    folder = make_tiny_vlm(tmp_path / "vlm")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder))
    est = estimate(str(folder), device="cpu", image_pixels=448 * 448)
    assert est.params == sum(p.numel() for p in model.parameters())
    assert est.settings["image_tokens"] == 256  # (448 / 14 / 2) ** 2 merged patches
    assert "256 tokens each, vision tower frozen" in est.to_text()
    llava = estimate(_vlm_configs()["LLaVA-1.5-7B"].to_dict(), device="cpu")
    assert llava.settings["image_tokens"] == 576  # (336 / 14) ** 2, whatever the pixels


def test_vision_tower_frozen_or_trained():
    config = _vlm_configs()["Qwen2-VL-2B"].to_dict()
    text_only = {k: v for k, v in config.items() if k != "vision_config"}
    frozen = estimate(config, method="full", device="cpu", dtype="bf16", image_pixels=1024 * 1024)
    trained = estimate(config, method="full", device="cpu", dtype="bf16", image_pixels=1024 * 1024, train_vision=True)
    bare = estimate(text_only, method="full", device="cpu", dtype="bf16")
    vision_params = frozen.params - bare.params
    assert 0.6e9 < vision_params < 0.7e9  # Qwen2-VL's 675M-parameter tower
    gb = 1024**3
    # frozen: its weights only; trained: + gradients and AdamW moments in bf16, and stored activations
    assert frozen.breakdown.loc["weights", "full"] - bare.breakdown.loc["weights", "full"] == pytest.approx(
        vision_params * 2 / gb
    )
    assert frozen.breakdown.loc["gradients", "full"] == pytest.approx(bare.breakdown.loc["gradients", "full"])
    assert trained.breakdown.loc["gradients", "full"] - frozen.breakdown.loc["gradients", "full"] == pytest.approx(
        vision_params * 2 / gb
    )
    assert trained.breakdown.loc["vision activations", "full"] > 20 * frozen.breakdown.loc["vision activations", "full"]
    assert trained.trainable["lora"] > frozen.trainable["lora"]  # LoRA on the tower's linears too
    # QLoRA quantizes the language model only: the tower's weights stay in bf16
    qlora_vision = frozen.breakdown.loc["weights", "qlora"] - bare.breakdown.loc["weights", "qlora"]
    assert qlora_vision == pytest.approx(vision_params * 2 / gb)
    # more pixels, more activations
    small = estimate(config, method="full", device="cpu", dtype="bf16", image_pixels=448 * 448, train_vision=True)
    assert small.breakdown.loc["vision activations", "full"] < trained.breakdown.loc["vision activations", "full"] / 4
    with pytest.raises(SwiftConfigError):
        estimate(config, device="cpu", image_pixels=0)
