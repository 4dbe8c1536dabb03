"""The GPU proof script stays runnable: its dry run (CPU, tiny shapes) completes every section and writes the
report's keys; its FLOP count matches the published parameter counts of the shapes it measures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _setup():
    sys.path.insert(0, str(SCRIPT.parent))
    import _gpu_setup

    return _gpu_setup


def test_flop_count_follows_the_stated_convention(tmp_path):
    gpu_check = _setup()
    hidden, inter, layers, heads, kv, vocab, _ = gpu_check.SHAPES["1.5b"]
    config = dict(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    lora = gpu_check.flops_per_token(tmp_path, 2048, full=False)
    full = gpu_check.flops_per_token(tmp_path, 2048, full=True)
    attention = 12 * layers * hidden * 2048
    matmul = (full - attention) / 6
    # Qwen2.5-1.5B: 1.31B non-embedding parameters (model card) + the 0.23B LM head matmul
    assert 1.50e9 < matmul < 1.58e9
    assert lora == 4 * matmul + attention


@pytest.mark.slow
def test_dry_run_completes_every_section(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads(out.read_text())
    failed = {name: section.get("error") for name, section in report["sections"].items() if section["status"] != "ok"}
    assert done.returncode == 0 and not failed, (failed, done.stdout[-2000:], done.stderr[-2000:])
    sections = report["sections"]
    assert set(sections) == {"sft_lora_mfu", "qlora_peak_vs_estimate", "dpo", "grpo", "serve", "classroom", "levers", "kernel_memory"}
    classroom = sections["classroom"]  # 4 adapters published through the service, one request each at once
    assert classroom["adapters"] == 4 and classroom["shared"]["rounds"][0]["requests"] == 4
    assert classroom["shared"]["rounds"][0]["tokens_per_s"] > 0 and classroom["shared"]["memory_gb"] is not None
    assert classroom["separate_one"]["rounds"][0]["tokens_per_s"] > 0
    kernel = sections["kernel_memory"]  # a stand-in kernel trained a run in its worker: no CUDA state in it
    assert kernel["state"] == "finished" and kernel["kernel_cuda_initialized"] is False
    levers = sections["levers"]
    for cuda_only in ("liger", "padding_free"):  # on the CPU: km.sft's one-line refusal, recorded
        refused = levers[cuda_only]["figures_on"]["refused"]
        assert "need" in refused and "CUDA" in refused and "\n" not in refused
        assert levers[cuda_only]["figures_off"]["tokens_per_s_median"] > 0
    for name in ("fused_adamw", "qlora_8bit_adamw"):  # both sides train: figures and the loss difference
        assert levers[name]["tokens_per_s_ratio"] > 0 and levers[name]["max_loss_diff"] < 0.05
    assert "skipped" in levers["compile"]
    sft = sections["sft_lora_mfu"]
    assert sft["ratio_km_vs_trl"] > 0 and len(sft["km"]) == len(sft["trl"]) == 2
    assert {"lora_mfu", "full_mfu", "lora_flops_per_token"} <= set(sft)
    rows = sections["qlora_peak_vs_estimate"]["rows"]
    assert [(r["shape"], r["method"], r["gradient_checkpointing"]) for r in rows] == [
        ("7b", "qlora", True),
        ("7b", "qlora", False),
        ("1.5b", "lora", True),
    ]
    assert all(r["estimate_gb"] > 0 for r in rows)
    assert sections["dpo"]["s_per_step"] > 0
    assert 0 < sections["grpo"]["generate_share"] <= 1
    serve = sections["serve"]
    assert serve["streams_1"]["tokens_per_s"] > 0 and serve["streams_32"]["tokens_per_s"] > 0
    assert serve["streams_1"]["first_token_ms_median"] > 0
