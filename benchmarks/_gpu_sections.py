"""The sections of the GPU check, one function each (what each times: gpu_check.py's docstring)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from _gpu_setup import (  # noqa: E402 - the benchmarks folder is on sys.path (gpu_check.py)
    LORA,
    ROOT,
    SEED,
    Check,
    bare_trl_sft,
    card_peak,
    finished,
    flops_per_token,
    km_sft,
    mfu,
    peak_gb,
    release,
    reset_peak,
    step_figures,
)


def section_sft(check: Check) -> dict[str, Any]:
    card, peak = card_peak()
    folder, data = check.model("1.5b"), check.rows(check.seq)
    sides: dict[str, list[dict]] = {"km": [], "trl": []}
    km_sft(check, folder, data, "lora", max_steps=2)  # warm-up of both sides: imports, kernels, allocator
    bare_trl_sft(check, folder, data, steps=2)
    for round_ in range(2):  # alternate which side goes first
        order = ("km", "trl") if round_ % 2 == 0 else ("trl", "km")
        for side in order:
            figures = (
                step_figures(km_sft(check, folder, data, "lora"), check.skip)
                if side == "km"
                else bare_trl_sft(check, folder, data)
            )
            sides[side].append(figures)
            release()
    km_tps = statistics.median(f["tokens_per_s_median"] for f in sides["km"])
    trl_tps = statistics.median(f["tokens_per_s_median"] for f in sides["trl"])
    lora_flops = flops_per_token(folder, check.seq, full=False)
    full_folder = check.model("0.5b")
    full = step_figures(km_sft(check, full_folder, data, "full", lr=1e-5), check.skip)
    full_flops = flops_per_token(full_folder, check.seq, full=True)
    return {
        "card": card,
        "peak_flops": peak,
        "seq": check.seq,
        "km": sides["km"],
        "trl": sides["trl"],
        "ratio_km_vs_trl": round(km_tps / trl_tps, 3),
        "target_ratio": 0.98,
        "lora_flops_per_token": lora_flops,
        "lora_mfu": mfu(km_tps, lora_flops, peak),
        "full_0.5b": full,
        "full_flops_per_token": full_flops,
        "full_mfu": mfu(full["tokens_per_s_median"], full_flops, peak),
        "target_full_mfu": 0.40,
    }


def measured_vs_estimate(check: Check, shape: str, method: str, checkpointing: bool) -> dict[str, Any]:
    import kernel_magics as km

    folder, data = check.model(shape), check.rows(check.seq)
    extra = dict(batch_size=1, gradient_checkpointing=checkpointing)
    if method == "qlora":
        extra["optim"] = "paged_adamw_8bit"
    reset_peak()
    run = km_sft(check, folder, data, method, **extra)
    measured = peak_gb(check)
    est = km.estimate(
        str(folder),
        method=method,
        max_length=check.seq,
        batch_size=1,
        lora_r=LORA["lora_r"],
        gradient_checkpointing=checkpointing,
        device=check.device,
    )
    overhead = est.breakdown[method].get("CUDA overhead", 0.0)
    predicted = round(float(est.totals[method] - overhead), 3)
    return {
        "shape": shape,
        "method": method,
        "gradient_checkpointing": checkpointing,
        "measured_gb": measured,
        "estimate_gb": predicted,
        "error": round((predicted - measured) / measured, 3) if measured else None,
        **step_figures(run, check.skip),
    }


def section_qlora(check: Check) -> dict[str, Any]:
    rows = [measured_vs_estimate(check, "7b", "qlora", gc_on) for gc_on in (True, False)]
    rows.append(measured_vs_estimate(check, "1.5b", "lora", True))
    return {
        "rows": rows,
        "target_error": 0.15,
        "reference": "Unsloth publishes Llama-3-8B QLoRA in about 6-7 GB (their kernels, seq 2048)",
    }


def section_dpo(check: Check) -> dict[str, Any]:
    import kernel_magics as km
    from kernel_magics.testing import tiny_dataset

    reset_peak()
    run = finished(
        km.dpo(
            str(check.model("1.5b")),
            str(tiny_dataset("dpo")),
            loss="dpo",
            method="qlora",
            max_steps=check.steps,
            batch_size=2,
            max_length=min(check.seq, 512),
            logging_steps=1,
            save_steps=10**6,
            seed=SEED,
            verbose=False,
            **LORA,
        )
    )
    return {"shape": "1.5b", "method": "qlora", "peak_gb": peak_gb(check), **step_figures(run, check.skip)}


def digit_share(completions: list, **_: Any) -> list[float]:
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]


def section_grpo(check: Check) -> dict[str, Any]:
    from transformers import GenerationMixin

    import kernel_magics as km

    if not hasattr(km, "grpo"):
        raise RuntimeError("km.grpo is not in this tree")
    spent = [0.0]
    generate = GenerationMixin.generate

    def timed_generate(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN001
        start = time.perf_counter()
        try:
            return generate(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    prompts = [{"prompt": f"Count to {i}."} for i in range(32)]
    GenerationMixin.generate = timed_generate
    try:
        reset_peak()
        started = time.perf_counter()
        run = finished(
            km.grpo(
                str(check.model("0.5b")),
                prompts,
                reward=digit_share,
                num_generations=4,
                max_completion_length=16 if check.dry else 128,
                max_steps=check.steps,
                batch_size=8,
                logging_steps=1,
                save_steps=10**6,
                seed=SEED,
                verbose=False,
                where="kernel",  # the generate timer above is patched into this process
            )
        )
        total = time.perf_counter() - started
    finally:
        GenerationMixin.generate = generate
    return {
        "shape": "0.5b",
        "peak_gb": peak_gb(check),
        "generate_share": round(spent[0] / total, 3),
        **step_figures(run, check.skip),
    }


async def stream_completion(client: Any, url: str, model: str, max_tokens: int) -> tuple[float, int]:
    """First-token seconds and completion tokens of one streamed completion."""
    body = {
        "model": model,
        "prompt": "Once upon a time",
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, first, tokens, chunks = time.perf_counter(), None, None, 0
    async with client.stream("POST", f"{url}/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices"):  # a token may decode to "" (partial UTF-8): it still counts as arrived
                first = first or time.perf_counter() - start
                chunks += 1
    return first or float("nan"), tokens if tokens is not None else chunks


async def load(url: str, model: str, clients: int, max_tokens: int) -> dict[str, float]:
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(stream_completion(client, url, model, max_tokens) for _ in range(clients)))
        took = time.perf_counter() - start
    return {
        "clients": clients,
        "tokens_per_s": round(sum(t for _, t in results) / took, 1),
        "first_token_ms_median": round(1000 * statistics.median(f for f, _ in results), 1),
    }


def section_serve(check: Check) -> dict[str, Any]:
    import torch

    import kernel_magics as km

    release()
    before = torch.cuda.memory_allocated() if check.cuda else 0
    server = km.serve(str(check.model("0.5b")), backend="transformers", device=check.device, max_batch_size=32)
    try:
        serving = torch.cuda.memory_allocated() if check.cuda else 0
        model, max_tokens = server.models[0], 16 if check.dry else 256
        asyncio.run(load(server.url, model, 1, 4))  # warm-up
        figures = [asyncio.run(load(server.url, model, n, max_tokens)) for n in (1, 32, 1, 32)]
    finally:
        server.stop()
    release()
    after = torch.cuda.memory_allocated() if check.cuda else 0
    best = {n: max((f for f in figures if f["clients"] == n), key=lambda f: f["tokens_per_s"]) for n in (1, 32)}
    return {
        "shape": "0.5b",
        "engine": "transformers",
        "rounds": figures,
        "streams_1": best[1],
        "streams_32": best[32],
        "memory_gb": {
            "before": round(before / 1024**3, 3),
            "serving": round(serving / 1024**3, 3),
            "after_stop": round(after / 1024**3, 3),
        },
        "returned_fraction": round((serving - after) / (serving - before), 3) if serving > before else None,
        "vllm": "not measured: the vLLM wheel does not fit in what can be carried to the GPU machine",
    }


def section_pytest(check: Check) -> dict[str, Any]:
    report = check.work / "pytest-gpu.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        f"--junitxml={report.with_suffix('.xml')}",
        "tests",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=420)
    tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
    import xml.etree.ElementTree as ET

    suite = ET.parse(report.with_suffix(".xml")).getroot().find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return {
        "exit_code": done.returncode,
        **counts,
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "tail": tail,
    }
