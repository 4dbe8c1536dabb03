"""GPU: LoRA- and QLoRA-DPO on a random-init model of a real 0.5B architecture (Qwen2.5-0.5B's config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel_magics.testing import tiny_dataset
from kernel_magics.train.methods.registry import METHODS

pytestmark = pytest.mark.gpu
DPO = next(m for m in METHODS if m.name == "dpo")  # the registry entry the launcher starts


@pytest.fixture(scope="module")
def qwen_05b(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2.5-0.5B's architecture (494M parameters), random weights, with the tiny kit's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("qwen2.5-0.5b-random")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    config = Qwen2Config(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    assert 480e6 < sum(p.numel() for p in model.parameters()) < 510e6
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("method", ["lora", pytest.param("qlora", marks=pytest.mark.needs("bitsandbytes"))])
def test_dpo_on_a_05b_architecture(qwen_05b, workspace, method):
    import torch

    import kernel_magics as km
    from kernel_magics.train.methods.dpo import PreferenceArguments, build_trainer
    from kernel_magics.train.runtime.start import create_run

    knobs = dict(
        model=str(qwen_05b),
        dataset=str(tiny_dataset("dpo")),
        method=method,
        lora_r=16,
        lora_alpha=32,
        lr=5e-4,
        batch_size=8,
        logging_steps=1,
        save_steps=1000,
        warmup_ratio=0.0,
        lr_scheduler="constant",
    )
    run, inputs = create_run(DPO, PreferenceArguments(max_steps=2, **knobs), verbose=False)
    trainer = build_trainer(run, inputs)
    assert trainer.ref_model is None  # the reference is the same weights with the adapter off
    if method == "qlora":
        import bitsandbytes as bnb

        assert any(isinstance(m, bnb.nn.Linear4bit) for m in trainer.model.modules())
    del trainer, run, inputs
    torch.cuda.empty_cache()

    run = km.dpo(max_steps=30, verbose=False, **knobs)
    assert run.wait(600) == "finished", run.error
    assert run.config.plan.method == method and run.config.plan.device.startswith("cuda")
    frame = run.metrics
    margins = frame["rewards/margins"].dropna().tolist()
    head, tail = sum(margins[:5]) / 5, sum(margins[-5:]) / 5
    peak = float(frame["memory_gb"].max())
    print(f"{method}-DPO on 0.5B: margin {head:.3f} -> {tail:.3f}, peak {peak:.2f} GiB allocated")
    assert len(margins) == 30 and tail > head
    assert frame["rewards/accuracies"].tail(5).mean() > 0.5
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
