"""gpu_check's ``classroom`` section: one base model serving 32 students' adapters together, as the classroom
service does, against one plain server holding the base and one adapter (what each student's own ``km.serve``
would hold; 32 of them hold 32 bases).

The shared side is the classroom service itself (``km.practice_classroom``: the service's engine, fair turns
and adapter uploads, no hub) with vLLM's engine and a per-request LoRA for each adapter when vLLM can serve
here, else the transformers engine with peft adapters (the report says which, and why). Every adapter is
published through the service's upload route. Timed: 32 concurrent greedy chat requests, one per adapter,
from the first sent to the last answered (completion tokens / s from ``usage``); then the same with the
separate server answering one request (one student's own server). Memory: the device's used memory
(``torch.cuda.mem_get_info``, which also sees vLLM's engine process) or, on the CPU, the resident memory of
this process and its children, each side measured after its warm-up.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _gpu_setup import Check, release

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def make_adapters(base: Path, folder: Path, count: int) -> list[Path]:
    """``count`` LoRA adapters (rank 16, q/v) with random B matrices, each trained on nothing but different."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    folders = []
    for seed in range(count):
        torch.manual_seed(seed)
        tuned = get_peft_model(model, config)
        tuned.save_pretrained(folder / f"s{seed}")
        model = tuned.unload()
        folders.append(folder / f"s{seed}")
    return folders


def used_memory_gb(cuda: bool) -> float:
    import psutil
    import torch

    if cuda:
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 1024**3
    me = psutil.Process()
    return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)]) / 1024**3


def ask_all(url: str, token: str | None, models: list[str], max_tokens: int) -> dict[str, float]:
    """One greedy request per model, all at once: aggregate completion tokens / s."""

    def one(model: str) -> int:
        body = json.dumps({"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0}).encode()
        request = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=600) as response:
            return int(json.loads(response.read())["usage"]["completion_tokens"])

    started = time.perf_counter()
    with ThreadPoolExecutor(len(models)) as pool:
        tokens = sum(pool.map(one, models))
    seconds = time.perf_counter() - started
    return {"requests": len(models), "tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def section_classroom(check: Check) -> dict[str, Any]:
    import kernel_magics as km
    from kernel_magics.device import select_device
    from kernel_magics.serve.engines.vllm import unsupported_reason

    count, max_tokens = (4, 8) if check.dry else (32, 128)
    model = check.model("0.5b")
    # a dry run serves with the transformers engine: the vLLM class engine is tests/test_classroom_vllm.py's, and two
    # vLLM start-ups would double the dry run's time in CI
    why_not_vllm = "a dry run" if check.dry else unsupported_reason(select_device(check.device), model)
    backend = "transformers" if why_not_vllm else "vllm"
    adapters = make_adapters(model, check.work / "class-adapters", count)
    release()
    idle = used_memory_gb(check.cuda)
    practice = km.practice_classroom(str(model), backend=backend, device=check.device, max_batch_size=count, per_user_concurrency=count,
                                     adapters_per_student=count, tokens_per_minute=0, max_rank=16)  # fmt: skip
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # one "published ..." line per adapter
            names = [km.publish(folder, name=folder.name)["id"] for folder in adapters]
        ask_all(practice.url, practice.tokens["student"], names, 4)  # warm-up
        shared = [ask_all(practice.url, practice.tokens["student"], names, max_tokens) for _ in range(2)]
        shared_gb = used_memory_gb(check.cuda) - idle
    finally:
        practice.stop()
    release()
    idle = used_memory_gb(check.cuda)
    server = km.serve(str(model), adapters={"s0": str(adapters[0])}, backend=backend, device=check.device, name="class-separate")
    try:
        ask_all(server.base_url, None, ["s0"], 4)
        one = [ask_all(server.base_url, None, ["s0"], max_tokens) for _ in range(2)]
        separate_gb = used_memory_gb(check.cuda) - idle
    finally:
        server.stop()
    release()
    best_shared = max(shared, key=lambda f: f["tokens_per_s"])
    best_one = max(one, key=lambda f: f["tokens_per_s"])
    return {
        "shape": "0.5b",
        "adapters": count,
        "engine": backend,
        "why_not_vllm": why_not_vllm,
        "shared": {"rounds": shared, "memory_gb": round(shared_gb, 3)},
        "separate_one": {"rounds": one, "memory_gb": round(separate_gb, 3)},
        "separate_memory_gb_for_all": round(separate_gb * count, 3),
        "memory_ratio": round(separate_gb * count / shared_gb, 2) if shared_gb > 0 else None,
        "shared_tokens_per_s_per_student": round(best_shared["tokens_per_s"] / count, 1),
        "separate_tokens_per_s_one_student_alone": best_one["tokens_per_s"],
    }
