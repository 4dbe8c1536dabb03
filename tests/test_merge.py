"""Merging a LoRA adapter: parity with the adapter model, a plain HF folder, clear one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kernel_magics import cli
from kernel_magics.errors import SwiftConfigError, SwiftModelError, SwiftUsageError
from kernel_magics.export.merge import merge

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(base: Path, out: Path, seed: int = 0) -> Path:
    """A LoRA adapter with random (non-zero) B matrices, so it changes the logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(tiny_model, tmp_path_factory.mktemp("lora") / "runs" / "demo" / "adapter")


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_logits_equal_the_adapter_models(tiny_model: Path, adapter: Path, tmp_path: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = merge(str(tiny_model), adapter, tmp_path / "merged")
    assert out == tmp_path / "merged"
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json"} <= names
    assert {"chat_template.jinja", "merge_info.json"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"

    ids = torch.randint(3, 1000, (2, 24), generator=torch.Generator().manual_seed(0))
    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers, no peft
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    diff = (_logits(merged, ids) - _logits(reference, ids)).abs().max().item()
    moved = (_logits(base, ids) - _logits(reference, ids)).abs().max().item()
    print(f"merge parity: max |merged - adapter| = {diff:.2e}; the adapter moves logits by {moved:.3f}")
    assert diff < 1e-5
    assert moved > 1e-2, "the adapter should change the logits, or parity proves nothing"
    assert not any("lora" in name for name, _ in merged.named_parameters())

    tokenizer = AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"]


def test_run_object_default_folder_and_recorded_base(adapter: Path, capsys):
    class Run:  # what a training run exposes
        adapter_dir = adapter

    out = merge(adapter=Run())  # base read from adapter_config.json
    assert out == adapter.parent / "merged"
    assert "serve it with: %swift serve --model" in capsys.readouterr().out
    info = json.loads((out / "merge_info.json").read_text())
    assert info["adapter"] == str(adapter) and info["dtype"] == info["merged_in"] == "float32"
    again = merge(adapter=adapter)  # a folder we wrote is replaced in place
    assert again == out and (out / "model.safetensors").is_file()


def test_bfloat16_merge_saves_bfloat16_weights(tiny_model: Path, adapter: Path, tmp_path: Path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    out = merge(tiny_model, adapter, tmp_path / "bf16", dtype="bf16")
    with safe_open(str(out / "model.safetensors"), framework="pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}  # noqa: SIM118
    assert dtypes == {torch.bfloat16}
    fp32 = merge(tiny_model, adapter, tmp_path / "fp32")
    ids = torch.randint(3, 1000, (1, 16))
    low = _logits(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32), ids)
    high = _logits(AutoModelForCausalLM.from_pretrained(fp32), ids)
    assert (low - high).abs().max().item() < 0.1


def test_adapter_of_another_base_is_one_line(tiny_llama: Path, adapter: Path, tmp_path: Path):
    with pytest.raises(SwiftModelError) as err:
        merge(tiny_llama, adapter, tmp_path / "x")
    message = str(err.value)
    assert "\n" not in message and "model_type=qwen2" in message and "model_type=llama" in message
    assert not (tmp_path / "x").exists()


def test_bad_inputs_are_one_line(tiny_model: Path, adapter: Path, tmp_path: Path):
    with pytest.raises(SwiftModelError, match="has no adapter_config.json"):
        merge(tiny_model, tiny_model, tmp_path / "x")
    with pytest.raises(SwiftModelError, match="does not exist"):
        merge(tiny_model, tmp_path / "nope", tmp_path / "x")
    with pytest.raises(SwiftUsageError, match="merge needs an adapter"):
        merge(tiny_model)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SwiftConfigError, match="not written by kernel_magics"):
        merge(tiny_model, adapter, mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(SwiftConfigError, match="dtype 'int8'"):
        merge(tiny_model, adapter, tmp_path / "y", dtype="int8")


def test_cli_merge_and_its_error(tiny_model: Path, adapter: Path, tmp_path: Path, capsys):
    assert cli.main(["merge", str(adapter), "--base", str(tiny_model), "-o", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    capsys.readouterr()
    assert cli.main(["merge", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: adapter folder") and len(err.splitlines()) == 1


@pytest.mark.vllm
def test_merged_model_loads_in_vllm(tiny_model: Path, adapter: Path, tmp_path: Path, monkeypatch):
    """vLLM (CPU build) serves the merged folder and agrees with transformers on the greedy reply."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams

    out = merge(tiny_model, adapter, tmp_path / "merged")
    llm = LLM(str(out), enforce_eager=True, kv_cache_memory_bytes=64 << 20, max_model_len=256, dtype="float32")
    prompt = AutoTokenizer.from_pretrained(out)("The quick brown fox", add_special_tokens=False).input_ids
    got = llm.generate([{"prompt_token_ids": prompt}], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        want = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, min_new_tokens=8)
    assert list(got[0].outputs[0].token_ids) == want[0, len(prompt) :].tolist()


def test_low_memory_merges_in_the_saved_dtype(tiny_model: Path, adapter: Path, tmp_path: Path, monkeypatch):
    """When a float32 copy would not fit, the merge runs in the dtype being saved (bf16 here)."""
    import kernel_magics.device

    monkeypatch.setattr(kernel_magics.device, "host_memory_gb", lambda: (1.0, 0.001))
    out = merge(tiny_model, adapter, tmp_path / "low", dtype="bfloat16")
    info = json.loads((out / "merge_info.json").read_text())
    assert info["merged_in"] == "bfloat16" and info["dtype"] == "bfloat16"
