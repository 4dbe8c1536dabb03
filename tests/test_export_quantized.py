"""bitsandbytes 4-bit export (runs on the CPU) and GPTQ / AWQ export (CUDA only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kernel_magics import cli
from kernel_magics.errors import SwiftDeviceError, SwiftModelError, SwiftUsageError
from kernel_magics.export.api import export
from kernel_magics.export.merge import merge
from kernel_magics.testing import tiny_dataset


def test_bnb_4bit_folder_reloads_and_generates(tiny_model: Path, tmp_path: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    result = export(tiny_model, format="bnb-4bit", out_dir=tmp_path / "nf4")
    assert result.path == tmp_path / "nf4" and result.format == "bnb-4bit"
    assert result.details["linear_4bit_layers"] == 14  # 7 projections x 2 layers
    config = json.loads((result.path / "config.json").read_text())
    assert config["quantization_config"]["load_in_4bit"] is True
    assert config["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    original = (tiny_model / "model.safetensors").stat().st_size
    quantized = (result.path / "model.safetensors").stat().st_size
    print(f"bnb-4bit: {original} -> {quantized} bytes ({result.size} folder)")
    assert quantized < 0.6 * original

    model = AutoModelForCausalLM.from_pretrained(result.path).eval()  # settings come from config.json
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    reference = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = torch.randint(3, 1000, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        low, high = model(ids).logits, reference(ids).logits
        out = model.generate(ids[:1], max_new_tokens=6, min_new_tokens=6, do_sample=False)
    cosine = torch.nn.functional.cosine_similarity(low.flatten(), high.flatten(), dim=0).item()
    print(f"bnb-4bit logits cosine to fp32: {cosine:.4f}")
    assert 0.9 < cosine < 0.99999  # close, but really quantized
    assert out.shape[1] == 26

    # an adapter must never be merged into these 4-bit weights
    adapter = tmp_path / "adapter"
    get_peft_model(reference, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    with pytest.raises(SwiftModelError, match="holds bitsandbytes weights"):
        merge(result.path, adapter, tmp_path / "merged")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_gptq_and_awq_say_they_need_cuda(method: str, tiny_model: Path, tmp_path: Path):
    with pytest.raises(SwiftDeviceError) as err:
        export(tiny_model, format=method, dataset=tiny_dataset("sft"), out_dir=tmp_path / "q")
    message = str(err.value)
    assert "\n" not in message and "needs a CUDA GPU" in message and "gguf" in message
    assert not (tmp_path / "q").exists()


def test_bad_format_names_the_closest(tiny_model: Path, capsys):
    with pytest.raises(SwiftUsageError, match="did you mean 'gguf'"):
        export(tiny_model, format="ggfu")
    assert cli.main(["export", str(tiny_model), "--format", "onnx"]) == 2
    assert "'onnx' is not one of gguf, bnb-4bit, gptq, awq" in capsys.readouterr().err


def test_calibration_rows_come_from_the_users_dataset(tiny_model: Path):
    from kernel_magics.errors import SwiftConfigError
    from kernel_magics.export.gptq import calibration_texts

    texts = calibration_texts(tiny_model, tiny_dataset("sft"), 5)
    assert len(texts) == 5
    first = json.loads(tiny_dataset("sft").read_text(encoding="utf-8").splitlines()[0])
    assert texts[0].startswith("<|im_start|>system\n" + first["messages"][0]["content"])
    assert first["messages"][-1]["content"] + "<|im_end|>" in texts[0]
    with pytest.raises(SwiftConfigError, match="needs calibration data: pass dataset="):
        calibration_texts(tiny_model, None, 128)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "method",
    [pytest.param("gptq", marks=pytest.mark.needs("gptq")), pytest.param("awq", marks=pytest.mark.needs("awq"))],
)
def test_gptq_awq_export_on_gpu(method: str, tiny_model: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM

    result = export(
        tiny_model, format=method, dataset=tiny_dataset("sft"), calib_samples=32, group_size=32, out_dir=tmp_path / "q"
    )
    assert result.details["calibration_rows"] == 32
    config = json.loads((result.path / "config.json").read_text())
    assert "quantization_config" in config
    model = AutoModelForCausalLM.from_pretrained(result.path, device_map="cuda").eval()
    ids = torch.randint(3, 1000, (1, 12), device="cuda")
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == 16
