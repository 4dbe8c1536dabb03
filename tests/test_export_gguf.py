"""GGUF export: the file reads back with the right tensors and metadata, its values are the model's,
and transformers' own GGUF loader rebuilds a model and tokenizer that agree with the original."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import kernel_magics as km
from kernel_magics.errors import SwiftConfigError, SwiftModelError
from kernel_magics.export.api import export
from kernel_magics.export.gguf import permute_qk, unpermute_qk

TEXTS = [
    "Hello world! 你好，世界！ 1234567890 don't  stop\n\n  spaces",
    "<|im_start|>user\nWhat is LoRA?<|im_end|>\n<|im_start|>assistant\nSure! 好的！",
]


def hf_weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    return {k: v.float().numpy() for k, v in load_file(str(model_dir / "model.safetensors")).items()}


def read_gguf(path: Path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    meta = {key: field.contents() for key, field in reader.fields.items()}
    tensors = {t.name: t for t in reader.tensors}
    return meta, tensors


def as_hf_array(tensor) -> np.ndarray:
    """A GGUF tensor dequantized to float32, in the row-major shape HF uses."""
    import gguf

    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(data, dtype=np.float32).reshape([int(d) for d in reversed(tensor.shape)])


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_f32_file_has_the_models_tensors_and_metadata(arch: str, tiny_model: Path, tiny_llama: Path, tmp_path: Path):
    model_dir = tiny_model if arch == "qwen2" else tiny_llama
    result = export(model_dir, format="gguf", outtype="f32", out_dir=tmp_path)
    assert result.path.suffix == ".gguf" and result.path.parent == tmp_path
    assert result.size_bytes == result.path.stat().st_size > 0
    assert any(cmd.startswith("llama-server -m ") for cmd in result.serve)
    assert (tmp_path / "Modelfile").read_text() == f"FROM ./{result.path.name}\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    meta, tensors = read_gguf(result.path)
    config = json.loads((model_dir / "config.json").read_text())
    assert meta["general.architecture"] == arch
    assert meta[f"{arch}.context_length"] == config["max_position_embeddings"]
    assert meta[f"{arch}.embedding_length"] == 128
    assert meta[f"{arch}.block_count"] == 2
    assert meta[f"{arch}.feed_forward_length"] == 256
    assert meta[f"{arch}.attention.head_count"] == 4
    assert meta[f"{arch}.attention.head_count_kv"] == 2
    assert meta[f"{arch}.rope.dimension_count"] == 32
    assert meta[f"{arch}.rope.freq_base"] == pytest.approx(10000.0)
    assert meta[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert len(meta["tokenizer.ggml.tokens"]) == config["vocab_size"]
    assert meta["tokenizer.ggml.tokens"][2] == "<|im_end|>" and meta["tokenizer.ggml.eos_token_id"] == 2
    assert meta["tokenizer.ggml.padding_token_id"] == 0
    assert meta["tokenizer.ggml.add_bos_token"] is False  # the tiny tokenizers add no bos, like Qwen2
    assert meta["tokenizer.ggml.token_type"][:3] == [3, 3, 3]  # control tokens
    assert len(meta["tokenizer.ggml.merges"]) > 100
    assert "<|im_start|>assistant" in meta["tokenizer.chat_template"]
    assert "{%- generation %}" not in meta["tokenizer.chat_template"]
    assert "endgeneration" not in meta["tokenizer.chat_template"]

    weights = hf_weights(model_dir)
    assert len(tensors) == len(weights)  # tied embeddings: no separate output.weight
    expected = {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight"}
    assert expected <= set(tensors)
    assert ("blk.0.attn_q.bias" in tensors) == (arch == "qwen2")
    pairs = {
        "token_embd.weight": "model.embed_tokens.weight",
        "blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
        "blk.1.attn_k.weight": "model.layers.1.self_attn.k_proj.weight",
        "blk.1.attn_v.weight": "model.layers.1.self_attn.v_proj.weight",
        "blk.0.ffn_gate.weight": "model.layers.0.mlp.gate_proj.weight",
        "output_norm.weight": "model.norm.weight",
    }
    for gguf_name, hf_name in pairs.items():
        got = as_hf_array(tensors[gguf_name])
        if arch == "llama" and gguf_name.endswith(("attn_q.weight", "attn_k.weight")):
            got = unpermute_qk(got, 4 if "attn_q" in gguf_name else 2)  # llama.cpp's rotary layout
        np.testing.assert_array_equal(got, weights[hf_name])


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_transformers_loads_the_gguf_back(arch: str, tiny_model: Path, tiny_llama: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tiny_model if arch == "qwen2" else tiny_llama
    result = export(model_dir, outtype="f32", out_dir=tmp_path)
    gguf_model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=result.path.name, dtype=torch.float32)
    gguf_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=result.path.name)
    reference = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for text in TEXTS:
        assert gguf_tokenizer(text).input_ids == tokenizer(text).input_ids, text
    ids = torch.tensor([tokenizer(TEXTS[0]).input_ids])
    with torch.no_grad():
        diff = (gguf_model.eval()(ids).logits - reference(ids).logits).abs().max().item()
    print(f"{arch} GGUF f32 reloaded by transformers: max logit diff {diff:.2e}")
    assert diff < 1e-5


def test_quantized_outtypes_are_smaller_and_close(tiny_model: Path, tmp_path: Path):
    import gguf

    sizes = {}
    weights = hf_weights(tiny_model)
    for outtype in ("f32", "f16", "q8_0", "q4_0"):
        result = export(tiny_model, outtype=outtype, out_dir=tmp_path)
        sizes[outtype] = result.size_bytes
        _, tensors = read_gguf(result.path)
        gate = tensors["blk.0.ffn_gate.weight"]
        want = weights["model.layers.0.mlp.gate_proj.weight"]
        error = np.abs(as_hf_array(gate) - want).max()
        bound = {"f32": 0.0, "f16": 1e-3, "q8_0": np.abs(want).max() / 127, "q4_0": np.abs(want).max() / 7}[outtype]
        assert error <= bound + 1e-7, (outtype, error, bound)
        assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    print("GGUF sizes (bytes):", sizes)
    assert sizes["f32"] > sizes["f16"] > sizes["q8_0"] > sizes["q4_0"]


def test_export_merges_an_adapter_first(tiny_model: Path, tmp_path: Path, workspace: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False),
    )
    adapter = tmp_path / "runs" / "r1" / "adapter"
    peft_model.save_pretrained(adapter)
    merged = peft_model.merge_and_unload().state_dict()

    result = km.export(tiny_model, adapter=adapter, outtype="f32", out_dir=tmp_path / "out")
    assert result.path.name == "r1-f32.gguf"
    assert result.details["source"] == f"{tiny_model} + {adapter}"
    assert list(workspace.iterdir()) == []  # the merge made on the way is gone
    _, tensors = read_gguf(result.path)
    for gguf_name, hf_name in [
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
        ("blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"),
    ]:
        np.testing.assert_allclose(as_hf_array(tensors[gguf_name]), merged[hf_name].numpy(), atol=1e-6)
    # the adapter folder alone is enough: its base comes from adapter_config.json
    again = km.export(adapter, out_dir=tmp_path / "out2")
    assert again.path.name == "r1-f16.gguf" and "serve it with" in again.to_text()


def test_unsupported_inputs_fail_in_one_line(tiny_model: Path, tmp_path: Path):
    with pytest.raises(SwiftConfigError, match="outtype 'q3'"):
        export(tiny_model, outtype="q3", out_dir=tmp_path)
    other = tmp_path / "gpt2ish"
    shutil.copytree(tiny_model, other)
    config = json.loads((other / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(SwiftModelError, match="GGUF export supports .* GPT2LMHeadModel") as err:
        export(other, out_dir=tmp_path / "o")
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "o").glob("*.gguf"))


def test_qk_permutation_round_trips():
    weight = np.arange(2 * 32 * 6, dtype=np.float32).reshape(64, 6)
    permuted = permute_qk(weight, 2)
    assert not np.array_equal(permuted, weight)
    np.testing.assert_array_equal(unpermute_qk(permuted, 2), weight)
    # head 0, rotary pair 0: rows 0 and 16 (half the head dim apart) become neighbours
    np.testing.assert_array_equal(permuted[:2], weight[[0, 16]])


def test_llama3_rope_scaling_writes_the_factors_transformers_uses(tiny_llama: Path, tmp_path: Path):
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaled = tmp_path / "llama31ish"
    shutil.copytree(tiny_llama, scaled)
    config = json.loads((scaled / "config.json").read_text())
    config["rope_parameters"] = {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,  # small, so all three frequency bands occur at head_dim 32
    }
    (scaled / "config.json").write_text(json.dumps(config))
    result = export(scaled, outtype="f32", out_dir=tmp_path / "out")
    _, tensors = read_gguf(result.path)
    assert result.details["tensors"] == len(hf_weights(scaled)) + 1
    factors = as_hf_array(tensors["rope_freqs.weight"])

    hf_config = AutoConfig.from_pretrained(scaled)
    scaled_inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config, "cpu")
    default_inv_freq = 1.0 / 10000.0 ** (torch.arange(0, 32, 2, dtype=torch.float64) / 32)
    expected = (default_inv_freq / scaled_inv_freq.double()).numpy()
    assert factors.shape == (16,) and factors[0] == 1.0 and factors[-1] == pytest.approx(8.0)
    assert ((factors > 1.0) & (factors < 8.0)).sum() >= 2  # the smoothed band
    np.testing.assert_allclose(factors, expected, rtol=1e-5)


def test_untied_output_head_is_written_as_output_weight(tiny_model: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 0.5)
    untied = tmp_path / "untied"
    model.save_pretrained(untied)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(untied)

    result = export(untied, outtype="f32", out_dir=tmp_path / "out")
    _, tensors = read_gguf(result.path)
    np.testing.assert_array_equal(as_hf_array(tensors["output.weight"]), model.lm_head.weight.detach().numpy())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", gguf_file=result.path.name, dtype=torch.float32)
    ids = torch.randint(3, 1000, (1, 12))
    with torch.no_grad():
        diff = (reloaded.eval()(ids).logits - model.eval()(ids).logits).abs().max().item()
    assert diff < 1e-5


def with_bos_tokenizer(model_dir: Path, out: Path) -> Path:
    """A copy of ``model_dir`` whose tokenizer starts every text with a bos token, as Llama 3's does."""
    shutil.copytree(model_dir, out)
    data = json.loads((out / "tokenizer.json").read_text())
    bos = {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}},
    }
    (out / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "bos_token": "<|endoftext|>"}))
    return out


def test_a_tokenizer_that_adds_bos_says_so(tiny_llama: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    model_dir = with_bos_tokenizer(tiny_llama, tmp_path / "bos")
    assert AutoTokenizer.from_pretrained(model_dir)("hi").input_ids[0] == 0
    meta, _ = read_gguf(export(model_dir, out_dir=tmp_path / "out").path)
    assert meta["tokenizer.ggml.add_bos_token"] is True and meta["tokenizer.ggml.bos_token_id"] == 0
