"""Preference tuning on the tiny model: every loss learns the kit's preferences, SFT -> DPO continues the
SFT adapter against its frozen start, and LoRA never keeps a second copy of the weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import kernel_magics as km
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.methods.registry import METHODS

DPO = next(m for m in METHODS if m.name == "dpo")  # the registry entry the launcher starts
PAIRS = str(tiny_dataset("dpo"))
UNPAIRED = str(tiny_dataset("kto"))
FAST = dict(
    verbose=False,
    method="lora",
    dtype="fp32",  # exact-start checks compare with an fp32 model; auto is bf16 on CPUs with native bf16
    lora_r=8,
    lora_alpha=16,
    batch_size=4,
    logging_steps=1,
    save_steps=1000,
    warmup_ratio=0.0,
    lr_scheduler="constant",
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning threads per process make steps ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def column(run, name: str) -> list[float]:
    frame = run.metrics
    assert name in frame.columns, f"{name} missing from Run.metrics ({list(frame.columns)})"
    return [float(v) for v in frame[name].dropna()]


def finished(run) -> None:
    assert run.wait(240) == "finished", run.error


# beta: ORPO's NLL term dominates on a random-init model at the default 0.1; 1.0 lets the odds term show.
LOSSES = [
    ("dpo", PAIRS, {"lr": 1e-3}, 16),
    ("simpo", PAIRS, {"lr": 1e-3}, 16),
    ("orpo", PAIRS, {"lr": 1e-3, "beta": 1.0}, 24),
    ("kto", UNPAIRED, {"lr": 1e-3}, 16),
]


@pytest.mark.parametrize(("loss", "dataset", "extra", "steps"), LOSSES, ids=[c[0] for c in LOSSES])
def test_each_loss_learns_the_preferences(tiny_model, workspace, loss, dataset, extra, steps):
    run = km.dpo(str(tiny_model), dataset, loss=loss, max_steps=steps, **FAST, **extra)
    finished(run)
    assert run.config.kind == loss and run.config.trainer == "kernel_magics.train.methods.dpo:build_trainer"
    losses = column(run, "loss")
    margins = column(run, "rewards/margins")
    head, tail = mean(margins[:4]), mean(margins[-4:])
    print(f"{loss}: loss {mean(losses[:4]):.3f} -> {mean(losses[-4:]):.3f}, margin {head:.3f} -> {tail:.3f}")
    assert mean(losses[-4:]) < mean(losses[:4])
    assert tail > head + 0.1
    if loss != "kto":  # KTO has no pairs, so no pairwise accuracy
        accuracies = column(run, "rewards/accuracies")
        print(f"{loss}: accuracy {mean(accuracies[:4]):.2f} -> {mean(accuracies[-4:]):.2f}")
        assert mean(accuracies[-4:]) >= 0.9 and mean(accuracies[-4:]) > mean(accuracies[:4])
    for name in {"orpo": ["log_odds_ratio", "nll_loss"], "kto": ["kl"]}.get(loss, []):
        assert len(column(run, name)) == steps
    column(run, "rewards/chosen"), column(run, "rewards/rejected")
    logged = [json.loads(line) for line in run.logging_file.read_text().splitlines()]
    assert sum("rewards/margins" in row for row in logged) == len(margins)
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert not (run.adapter_dir / "ref").exists()
    tokens = column(run, "tokens_per_s")
    assert tokens and min(tokens) > 0


def _base_parameters(path: Path) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(path)).parameters())


def _lora_parameters(model, adapter: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if f".{adapter}." in n)


def test_fresh_lora_dpo_keeps_one_copy_of_the_weights(tiny_model, workspace):
    from kernel_magics.train.methods.dpo import PreferenceArguments, build_trainer
    from kernel_magics.train.runtime.start import create_run

    run, inputs = create_run(
        DPO, PreferenceArguments(model=str(tiny_model), dataset=PAIRS, max_steps=2, **_args()), verbose=False
    )
    trainer = build_trainer(run, inputs)
    assert trainer.ref_model is None
    assert "ref" not in trainer.model.peft_config
    total = sum(p.numel() for p in trainer.model.parameters())
    lora = _lora_parameters(trainer.model, "default")
    assert lora == sum(p.numel() for p in trainer.model.parameters() if p.requires_grad) > 0
    assert total == _base_parameters(tiny_model) + lora  # the base weights once, no reference copy
    assert "adapter disabled" in run.notes[-1]


def _args() -> dict:
    return {k: v for k, v in FAST.items() if k != "verbose"}


def test_sft_then_dpo_continues_the_sft_adapter(tiny_model, workspace):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.utils import use_adapter

    from kernel_magics.train.methods.dpo import PreferenceArguments, build_trainer
    from kernel_magics.train.runtime.start import create_run, start_run

    sft = km.sft(str(tiny_model), str(tiny_dataset("sft")), max_steps=6, lr=2e-3, **FAST)
    finished(sft)

    # model=None: the base comes from the SFT run; adapter= takes the Run itself
    args = PreferenceArguments(dataset=PAIRS, adapter=sft, lr=1e-3, max_steps=6, **_args())
    run, inputs = create_run(DPO, args, verbose=False)
    assert inputs.adapter_dir == sft.adapter_dir.resolve()
    assert Path(run.config.model_path).resolve() == Path(tiny_model).resolve()
    trainer = build_trainer(run, inputs)

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    ids = tokenizer("Sure! The capital of France is Paris.", return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    with torch.no_grad():
        base_logits = base(ids).logits
        expected = PeftModel.from_pretrained(base, str(sft.adapter_dir)).eval()(ids).logits
        policy = trainer.model.eval()
        step0 = policy(ids).logits
        with use_adapter(policy, "ref"):
            reference = policy(ids).logits
    assert (expected - base_logits).abs().max() > 1e-3  # the SFT adapter changes the model ...
    torch.testing.assert_close(step0, expected, atol=1e-5, rtol=0)  # ... and DPO starts exactly there
    torch.testing.assert_close(reference, expected, atol=1e-5, rtol=0)  # its reference is that same start

    # no second model: base weights once, plus the trainable adapter and its frozen snapshot
    assert trainer.ref_model is None
    lora = _lora_parameters(policy, "default")
    assert _lora_parameters(policy, "ref") == lora
    assert sum(p.numel() for p in policy.parameters()) == _base_parameters(tiny_model) + 2 * lora
    assert sum(p.numel() for p in policy.parameters() if p.requires_grad) == lora
    del trainer, policy

    start_run(run, inputs)
    finished(run)
    chosen, margins = column(run, "rewards/chosen"), column(run, "rewards/margins")
    assert abs(chosen[0]) < 1e-6 and abs(margins[0]) < 1e-6  # step 1: policy == reference
    assert margins[-1] > 0.01
    saved = run.adapter_dir / "adapter_model.safetensors"
    assert saved.is_file() and not (run.adapter_dir / "ref").exists()
    from safetensors.torch import load_file

    before, after = load_file(str(sft.adapter_dir / "adapter_model.safetensors")), load_file(str(saved))
    assert before.keys() == after.keys()
    assert max((after[k] - before[k]).abs().max().item() for k in before) > 0  # the SFT adapter was trained further


def test_orpo_starts_from_the_base_without_reference(tiny_model, workspace):
    from kernel_magics.train.methods.dpo import PreferenceArguments, build_trainer
    from kernel_magics.train.runtime.start import create_run

    run, inputs = create_run(
        DPO, PreferenceArguments(model=str(tiny_model), dataset=PAIRS, loss="orpo", **_args()), verbose=False
    )
    trainer = build_trainer(run, inputs)
    from trl.experimental.orpo import ORPOTrainer

    assert isinstance(trainer, ORPOTrainer)
    assert getattr(trainer, "ref_model", None) is None and "ref" not in trainer.model.peft_config
    assert "reference-free" in run.notes[-1]


def test_stop_and_resume_a_chained_run(tiny_model, workspace):
    sft = km.sft(str(tiny_model), str(tiny_dataset("sft")), max_steps=3, lr=2e-3, **FAST)
    finished(sft)
    run = km.dpo(dataset=PAIRS, adapter=sft.adapter_dir, max_steps=20, lr=1e-3, **FAST)
    for _ in range(2400):  # at most 2 minutes
        if run.progress.get("step", 0) >= 2 or run.done:
            break
        run.wait(0.05)
    run.stop()
    assert run.wait(120) == "stopped", run.error
    stopped_at = run.progress["step"]
    assert run.checkpoints and not (run.checkpoints[-1] / "ref").exists()
    run.resume()
    finished(run)
    steps = [int(s) for s in run.metrics["step"]]
    assert steps[-1] == 20 and stopped_at < 20
    assert column(run, "rewards/margins")[-1] > 0.05


def test_ms_swift_rows_in_memory_with_eval_split(tiny_model, workspace):
    rows = [json.loads(line) for line in Path(PAIRS).read_text().splitlines()]
    swift = [
        {
            "messages": [
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["chosen"]},
            ],
            "rejected_response": r["rejected"],
        }
        for r in rows
    ]
    run = km.dpo(str(tiny_model), swift, loss="simpo", lr=1e-3, max_steps=4, eval_split=0.1, eval_steps=2, **FAST)
    finished(run)
    assert run.config.data["format"] == "swift"
    copy = Path(run.config.dataset_copy)  # in-memory rows are kept with the run (resume reads them)
    assert copy.parent == run.output_dir and len(copy.read_text().splitlines()) == 160
    frame = run.metrics
    assert frame["eval_rewards/margins"].dropna().size == 2 and frame["eval_rewards/accuracies"].dropna().size == 2


def test_qlora_sft_then_qlora_dpo_on_the_cpu(tiny_model, workspace):
    pytest.importorskip("bitsandbytes")
    sft = km.sft(str(tiny_model), str(tiny_dataset("sft")), max_steps=3, lr=2e-3, **{**FAST, "method": "qlora"})
    finished(sft)
    run = km.dpo(dataset=PAIRS, adapter=sft, lr=1e-3, max_steps=8, **{**FAST, "method": "qlora"})
    finished(run)
    assert run.config.plan.method == "qlora"
    margins = column(run, "rewards/margins")
    assert abs(margins[0]) < 1e-4 and margins[-1] > 0.05  # starts at the SFT adapter (4-bit base, bf16 adapter)


def test_a_run_built_but_never_started_does_not_hold_up_stop_all(tiny_model, workspace):
    import time

    from kernel_magics.jobs import live_jobs, stop_all
    from kernel_magics.train.methods.dpo import PreferenceArguments
    from kernel_magics.train.runtime.start import create_run

    run, _ = create_run(DPO, PreferenceArguments(model=str(tiny_model), dataset=PAIRS, **_args()), verbose=False)
    assert run not in live_jobs("run")
    start = time.monotonic()
    stop_all("run", timeout=30)
    assert time.monotonic() - start < 5
