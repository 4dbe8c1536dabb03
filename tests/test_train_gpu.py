"""On a CUDA device: LoRA and QLoRA runs of a random-init real architecture (Qwen2.5-0.5B config), peak
memory against ``km.estimate`` (target within 15 %) on rows of exactly ``max_length`` tokens, unpacked (what
the estimate assumes), and tokens/s. Skipped without CUDA."""

from __future__ import annotations

import json

import pytest

import kernel_magics as km

QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
}


@pytest.fixture(scope="module")
def qwen_05b(tmp_path_factory, tiny_model):
    """Qwen2.5-0.5B architecture with random bf16 weights and the tiny model's tokenizer (ids < vocab)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("qwen2.5-0.5b-random")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = Qwen2Config(
        **{k: v for k, v in QWEN25_05B.items() if k not in ("architectures", "model_type")},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def full_length_rows(model_dir, max_length: int, count: int) -> list[dict]:
    """``count`` text rows of exactly ``max_length`` tokens with the end token (no padding, no packing)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [
        {"text": f" row{i}" + " the" * (max_length - 1 - len(tokenizer(f" row{i}")["input_ids"]))} for i in range(count)
    ]
    assert all(len(tokenizer(r["text"])["input_ids"]) + 1 == max_length for r in rows)
    return rows


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["lora", pytest.param("qlora", marks=pytest.mark.needs("bitsandbytes"))])
def test_real_architecture_peak_memory_within_estimate(qwen_05b, workspace, method):
    import torch

    settings = dict(max_length=1024, batch_size=4, lora_r=64, gradient_checkpointing=True)
    rows = full_length_rows(qwen_05b, settings["max_length"], 64)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run = km.sft(
        str(qwen_05b),
        rows,
        method=method,
        max_steps=8,
        packing=False,  # every row is exactly max_length tokens, as the estimate assumes
        logging_steps=1,
        save_steps=1000,
        verbose=False,
        **settings,
    )
    assert run.wait(600) == "finished", run.error
    peak = torch.cuda.max_memory_allocated() / 1024**3
    est = km.estimate(str(qwen_05b), method=method, **settings)
    predicted = est.total_gb - est.breakdown.loc["CUDA overhead", method]
    error = (predicted - peak) / peak
    tps = run.metrics["tokens_per_s"].dropna().iloc[2:].median()
    figures = {
        "method": method,
        "peak_gb": round(peak, 3),
        "estimate_gb": round(predicted, 3),
        "error": round(error, 3),
    }
    figures["tokens_per_s"] = round(float(tps), 1)
    print(json.dumps(figures))
    loss = run.metrics["loss"].dropna()
    assert loss.iloc[-3:].mean() < loss.iloc[:3].mean()
    assert abs(error) <= 0.15, figures
