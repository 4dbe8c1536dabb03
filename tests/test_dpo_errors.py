"""Bad input to km.dpo / %swift dpo / rlhf: one line (a SwiftError subclass), no run folder, nothing loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.errors import SwiftConfigError, SwiftDataError, SwiftModelError, SwiftUsageError
from kernel_magics.testing import tiny_dataset

PAIRS = str(tiny_dataset("dpo"))
QUIET = dict(verbose=False, method="lora", lora_r=4, lora_alpha=8, max_steps=2)


def one_line(info: pytest.ExceptionInfo) -> str:
    text = str(info.value)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def no_runs(workspace: Path) -> bool:
    runs = workspace / "runs"
    return not runs.exists() or not any(runs.iterdir())


def test_loss_and_beta_errors(tiny_model, workspace):
    with pytest.raises(SwiftConfigError) as info:
        km.dpo(str(tiny_model), PAIRS, loss="simpoo", **QUIET)
    assert one_line(info) == "--loss 'simpoo' is not one of dpo, orpo, kto, simpo (did you mean 'simpo'?)"
    with pytest.raises(SwiftUsageError) as info:
        cli.parse("dpo --loss orp")
    assert "did you mean 'orpo'" in one_line(info)
    with pytest.raises(SwiftUsageError) as info:
        cli.parse("rlhf --type kot")
    assert "did you mean 'kto'" in one_line(info)
    for beta in (0, -0.5):
        with pytest.raises(SwiftConfigError) as info:
            km.dpo(str(tiny_model), PAIRS, beta=beta, **QUIET)
        assert one_line(info).startswith(f"beta must be > 0, got {beta!r}; fix --beta")
    with pytest.raises(SwiftConfigError) as info:
        km.dpo(str(tiny_model), str(tiny_dataset("kto")), loss="kto", batch_size=1, **QUIET)
    assert "batch_size must be >= 2 for kto" in one_line(info)
    assert no_runs(workspace)


def test_data_errors(tiny_model, workspace, tmp_path):
    no_rejected = tmp_path / "prefs.jsonl"
    no_rejected.write_text('{"prompt": "Hi", "chosen": "Hello!"}\n')
    with pytest.raises(SwiftDataError) as info:
        km.dpo(str(tiny_model), str(no_rejected), **QUIET)
    assert "has a 'chosen' column but no 'rejected' column" in one_line(info)

    one_label = tmp_path / "kto.jsonl"
    one_label.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "completion": "a", "label": False}) + "\n" for i in range(4))
    )
    with pytest.raises(SwiftDataError) as info:
        km.dpo(str(tiny_model), str(one_label), loss="kto", **QUIET)
    assert "all 4 rows are undesirable (label false); KTO needs both kinds" in one_line(info)

    with pytest.raises(SwiftDataError) as info:
        km.dpo(str(tiny_model), str(tiny_dataset("kto")), loss="dpo", **QUIET)
    assert "for --loss kto" in one_line(info)

    same = [
        {"prompt": "Hi", "chosen": "Same.", "rejected": "Same."},
        {"prompt": "Yo", "chosen": "Hey!", "rejected": "Meh."},
    ]
    with pytest.raises(SwiftDataError) as info:
        km.dpo(str(tiny_model), same, **QUIET)
    assert one_line(info).startswith("rows row 1: chosen/rejected: chosen and rejected are identical")
    assert no_runs(workspace)


def test_adapter_errors(tiny_model, tiny_llama, workspace, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    llama_adapter = tmp_path / "llama-adapter"
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(llama_adapter))
    with pytest.raises(SwiftModelError) as info:
        km.dpo(str(tiny_model), PAIRS, adapter=str(llama_adapter), **QUIET)
    text = one_line(info)
    assert f"adapter {llama_adapter.resolve()} was trained on tiny-llama but --model is tiny-qwen2" in text
    assert "model_type llama vs qwen2" in text and f"pass --model {tiny_llama}" in text

    with pytest.raises(SwiftModelError) as info:
        km.dpo(str(tiny_model), PAIRS, adapter=str(tmp_path / "nowhere"), **QUIET)
    assert "does not exist" in one_line(info)
    with pytest.raises(SwiftModelError) as info:
        km.dpo(str(tiny_model), PAIRS, adapter=str(tiny_model), **QUIET)
    assert "holds a whole model" in one_line(info)
    with pytest.raises(SwiftConfigError) as info:
        km.dpo(str(tiny_llama), PAIRS, adapter=str(llama_adapter), **{**QUIET, "method": "full"})
    assert "--adapter continues LoRA training" in one_line(info)
    assert no_runs(workspace)


def test_magic_shows_one_red_line_and_the_kernel_lives(tiny_model, workspace):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "kernel_magics")
    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("swift", f"dpo --model {tiny_model} --dataset {PAIRS}", "beta: -1\nlr: 5e-6\n")
    assert str(info.value).startswith("beta must be > 0, got -1.0")
    assert shell.run_cell("1 + 1").result == 2


def test_dpo_and_rlhf_parse_like_ms_swift():
    call = cli.parse(
        "dpo --model tiny --adapter /runs/sft-1/adapter --dataset prefs.jsonl --loss dpo", "beta: 0.1\nlr: 5e-6"
    )
    assert call.command.target == "kernel_magics.train.api:dpo"
    assert call.kwargs == {
        "model": "tiny",
        "adapter": "/runs/sft-1/adapter",
        "dataset": "prefs.jsonl",
        "loss": "dpo",
        "beta": 0.1,
        "lr": 5e-6,
    }
    call = cli.parse("rlhf --type orpo -d prefs.jsonl", "max_steps: 3")
    assert call.command.target == "kernel_magics.train.api:rlhf"
    assert call.kwargs == {"type": "orpo", "dataset": "prefs.jsonl", "max_steps": 3}
    from kernel_magics.train.commands import PREFERENCE_LOSSES
    from kernel_magics.train.methods.dpo import LOSSES

    assert PREFERENCE_LOSSES == LOSSES


def test_rlhf_alias_trains_orpo(tiny_model, workspace):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        call = cli.parse(
            ["rlhf", "--type", "orpo", "--model", str(tiny_model), "--dataset", PAIRS, "--method", "lora"],
            "max_steps: 2\nlora_r: 4\nlogging_steps: 1",
        )
        run = call.run()
        assert run.wait(120) == "finished", run.error
    finally:
        torch.set_num_threads(before)
    assert run.config.loss == "orpo" and run.config.kind == "orpo"
    assert list(run.metrics["step"]) == [1, 2]
    assert "log_odds_ratio" in run.metrics.columns


def test_adapter_of_a_run_still_training(tiny_model, workspace):
    sft = km.sft(str(tiny_model), str(tiny_dataset("sft")), save_steps=100000, **{**QUIET, "max_steps": 2000})
    try:
        with pytest.raises(SwiftUsageError) as info:
            km.dpo(dataset=PAIRS, adapter=sft, **QUIET)
        assert f"run {sft.name} is " in one_line(info) and "run.wait()" in str(info.value)
    finally:
        sft.stop()
        sft.wait(120)
