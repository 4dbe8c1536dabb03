"""km.estimate: parameter counts of real architectures from config.json alone, and a sane breakdown."""

from __future__ import annotations

import json

import pytest

from kernel_magics.errors import SwiftConfigError, SwiftModelError
from kernel_magics.train.estimate import estimate

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
