"""The labelled-logits SFT loss (kernel_magics.train.methods.sft_loss) changes speed, never results: the same loss and
gradients as TRL's fused head and as a plain causal-LM loss over full logits, the same losses over a run with
the same seed, TRL's own path when per-token metrics are asked for, and km.sft uses it by default."""

from __future__ import annotations

import json

import pytest

import kernel_magics as km
from kernel_magics.testing import tiny_dataset

STEPS = 8


def sft_rows() -> list[dict]:
    from kernel_magics.train.methods.sft import to_last_turn_completion

    rows = [json.loads(line) for line in tiny_dataset("sft").read_text().splitlines() if line.strip()]
    return to_last_turn_completion(rows)  # prompt/completion: loss on the last reply only, as km.sft's default


def build(trainer_class, model_path, tmp_path, *, steps=STEPS, dropout=0.05, **trainer_kwargs):
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed
    from trl import SFTConfig

    datasets.disable_progress_bars()
    set_seed(42)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=dropout, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    config = SFTConfig(
        output_dir=str(tmp_path / trainer_class.__name__),
        max_steps=steps,
        per_device_train_batch_size=4,
        max_length=256,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="no",
        seed=42,
        optim="adamw_torch",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = trainer_class(
        model=get_peft_model(model, lora),
        args=config,
        train_dataset=datasets.Dataset.from_list(sft_rows()),
        processing_class=AutoTokenizer.from_pretrained(model_path),
        **trainer_kwargs,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def loss_and_grads(trainer, batch, num_items):
    trainer.model.train()
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)
    loss.backward()
    loss = loss.detach()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return float(loss), grads


def test_labelled_loss_and_gradients_equal_trl_and_a_full_logits_loss(tiny_model, tmp_path):
    from trl import SFTTrainer

    from kernel_magics.train.methods.sft_loss import LabelledLogitsSFTTrainer

    trl = build(SFTTrainer, tiny_model, tmp_path, dropout=0.0)
    ours = build(LabelledLogitsSFTTrainer, tiny_model, tmp_path, dropout=0.0)
    assert ours.labelled_loss_off is None
    batch = next(iter(trl.get_train_dataloader()))
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < labelled < batch["labels"].numel() // 2  # most positions carry no label: the case this path is for
    for num_items in (None, labelled + 7):  # the trainer's own count, and a larger one (gradient accumulation)
        trl_loss, trl_grads = loss_and_grads(trl, batch, num_items)
        our_loss, our_grads = loss_and_grads(ours, batch, num_items)
        assert our_loss == pytest.approx(trl_loss, rel=1e-5)
        assert trl_grads.keys() == our_grads.keys()
        assert sum(int(grad.abs().max() > 0) for grad in trl_grads.values()) >= len(trl_grads) // 2  # lora_B's
        for name, grad in trl_grads.items():
            assert (our_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-7, name
    # transformers' own causal-LM loss over the full logits (mean over the labelled tokens)
    ours.model.eval()
    plain = ours.model(**batch).loss.detach()
    ours.model.train()
    assert loss_and_grads(ours, batch, None)[0] == pytest.approx(float(plain), rel=1e-5)
    assert "mean_token_accuracy" not in ours._metrics["train"] and ours._metrics["train"]["num_tokens"]


def logged(trainer) -> dict[int, dict]:
    return {row["step"]: row for row in trainer.state.log_history if "loss" in row}


def test_same_seed_same_losses_as_trl_over_a_run(tiny_model, tmp_path):
    from trl import SFTTrainer

    from kernel_magics.train.methods.sft_loss import LabelledLogitsSFTTrainer

    runs = {}
    for trainer_class in (SFTTrainer, LabelledLogitsSFTTrainer):  # LoRA dropout on: the same random masks
        trainer = build(trainer_class, tiny_model, tmp_path)
        trainer.train()
        runs[trainer_class] = logged(trainer)
    trl, ours = runs[SFTTrainer], runs[LabelledLogitsSFTTrainer]
    assert sorted(trl) == sorted(ours) == list(range(1, STEPS + 1))
    diffs = [abs(trl[s]["loss"] - ours[s]["loss"]) for s in trl]
    print("loss differences per step:", [f"{d:.1e}" for d in diffs])
    assert max(diffs) < 1e-3
    assert trl[STEPS]["loss"] < trl[1]["loss"] - 0.1  # it trained: the comparison is over a moving loss
    assert ours[STEPS]["num_tokens"] == trl[STEPS]["num_tokens"]
    assert "mean_token_accuracy" in trl[1] and "mean_token_accuracy" not in ours[1]


def test_token_metrics_keep_trls_loss_and_log_accuracy(tiny_model, tmp_path):
    from kernel_magics.train.methods.sft_loss import LabelledLogitsSFTTrainer

    trainer = build(LabelledLogitsSFTTrainer, tiny_model, tmp_path, steps=2, token_metrics=True)
    assert trainer.labelled_loss_off == "token metrics asked for"
    trainer.train()
    row = logged(trainer)[2]
    assert 0 <= row["mean_token_accuracy"] <= 1 and row["entropy"] > 0


def test_losses_it_does_not_cover_stay_trls(tiny_model, tmp_path):
    from kernel_magics.train.methods.sft_loss import LabelledLogitsSFTTrainer

    trainer = build(LabelledLogitsSFTTrainer, tiny_model, tmp_path, steps=1)
    trainer.args.loss_type = "dft"
    from kernel_magics.train.methods.sft_loss import unsupported_reason

    assert "dft" in unsupported_reason(trainer)


def test_km_sft_trains_on_labelled_logits_unless_token_metrics_are_asked(tiny_model, workspace):
    options = dict(max_steps=3, batch_size=4, logging_steps=1, lora_r=8, lora_alpha=16, verbose=False)
    fast = km.sft(str(tiny_model), str(tiny_dataset("sft")), **options)
    assert fast.wait(300) == "finished", fast.error
    assert "token_accuracy" not in fast.metrics.columns and fast.metrics["loss"].notna().sum() == 3
    assert not any(note.startswith("loss: TRL") for note in fast.notes)
    slow = km.sft(str(tiny_model), str(tiny_dataset("sft")), token_metrics=True, **options)
    assert slow.wait(300) == "finished", slow.error
    assert slow.metrics["token_accuracy"].between(0, 1).all()
    assert slow.config.arguments["token_metrics"] is True
    assert any("token metrics asked for" in note for note in slow.notes)
    assert slow.metrics["loss"].tolist() == pytest.approx(fast.metrics["loss"].tolist(), abs=1e-3)
