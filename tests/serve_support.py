"""Helpers for the serving tests: LoRA adapters built with peft on the tiny models, reference generation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


def make_lora_adapter(base_dir: Path, out_dir: Path, seed: int = 0, r: int = 8) -> Path:
    """Save a LoRA adapter of ``base_dir`` whose B matrices are random (so it changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    if (out_dir / "adapter_config.json").is_file():
        return out_dir
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out_dir)
    return out_dir


def reference_reply(base_dir: Path, messages: list[dict], max_tokens: int, adapter_dir: Path | None = None) -> str:
    """Greedy reply computed with plain transformers (+ peft), without any server."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, attention_mask=torch.ones_like(ids))
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


async def finish_reasons(handles: list[Any], timeout_s: float) -> list[Any]:
    """Each submitted request's last finish reason, or the exception its stream raised (none waits past
    ``timeout_s``)."""

    async def outcome(handle: Any) -> Any:
        try:
            return [d async for d in handle.deltas()][-1].finish_reason
        except Exception as exc:  # noqa: BLE001 - the error is the outcome under test
            return exc

    return await asyncio.wait_for(asyncio.gather(*(outcome(h) for h in handles)), timeout_s)
