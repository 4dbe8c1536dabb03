"""Vision-language SFT on the tiny Qwen2-VL through ``km.sft``: loss falls, the adapter changes answers,
the vision tower stays frozen unless asked, images cost a bounded number of tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Two cores shared by several test runs: one intra-op thread is ~20x faster than oversubscribing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_vlm(km_cache: Path) -> Path:
    from kernel_magics.testing_vlm import make_tiny_vlm

    return make_tiny_vlm(km_cache / "models" / "tiny-qwen2-vl")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kernel_magics.testing_vlm import tiny_image_dataset

    return tiny_image_dataset(tmp_path_factory.mktemp("shapes"), n=12)


def _answers(model, processor, rows: list[dict]) -> list[str]:  # noqa: ANN001
    from kernel_magics.data.images import load_image

    out = []
    for row in rows:
        text = processor.apply_chat_template(row["messages"][:1], add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=[load_image(p) for p in row["images"]], return_tensors="pt")
        ids = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        out.append(processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    return out


def _answer_nll(model, processor, rows: list[dict]) -> float:  # noqa: ANN001
    """Mean negative log-likelihood per token of each row's expected answer, after its question and image."""
    import torch

    from kernel_magics.data.images import load_image

    total, count = 0.0, 0
    for row in rows:
        images = [load_image(p) for p in row["images"]]
        prompt = processor.apply_chat_template(row["messages"][:1], add_generation_prompt=True, tokenize=False)
        answer = row["messages"][1]["content"]
        answer = answer if isinstance(answer, str) else "".join(p.get("text") or "" for p in answer)
        start = processor(text=[prompt], images=images, return_tensors="pt")["input_ids"].shape[1]
        inputs = processor(text=[prompt + answer], images=images, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, start - 1 : -1].float()
        targets = inputs["input_ids"][0, start:]
        total -= logits.log_softmax(-1).gather(-1, targets[:, None]).sum().item()
        count += len(targets)
    return total / count


def test_vqa_sft_lowers_loss_and_the_adapter_changes_answers(one_thread, tiny_vlm, shapes, workspace) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    import kernel_magics as km
    from kernel_magics.data.processor import load_processor
    from kernel_magics.data.vision import prepare_vision

    run = km.sft(
        str(tiny_vlm),
        str(shapes / "vqa.jsonl"),
        max_steps=48,
        batch_size=4,
        lr=1e-2,
        lora_r=16,
        lora_alpha=32,
        logging_steps=4,
        save_steps=1000,
        verbose=False,
    )
    assert run.wait(300) == "finished", run.error
    config = json.loads((run.output_dir / "config.json").read_text())
    assert config["trainer"] == "kernel_magics.train.methods.vlm:build_trainer" and config["data"]["format"] == "vqa"
    # What training guarantees on any CPU (AVX2, AVX-512, AMX: the kernels sum in different orders, so the
    # greedy words of a 48-step tiny model differ between them): the loss falls, the adapter makes the
    # expected answers more likely by a wide margin, and it changes what the model says.
    losses = run.metrics["loss"].dropna().tolist()
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    print(f"VLM SFT loss {first:.3f} -> {last:.3f} in 48 steps (mean of the first and the last two logged)")
    assert last < first - 1.0
    assert any("vision tower frozen" in note for note in run.notes)
    assert any("an image costs 4-4 tokens" in note for note in run.notes)

    weights = load_file(str(run.adapter_dir / "adapter_model.safetensors"))
    assert weights and not [k for k in weights if "visual" in k]  # LoRA on the language model only
    assert any("language_model" in k and "q_proj" in k for k in weights)

    processor = load_processor(tiny_vlm)
    rows = prepare_vision(shapes / "vqa.jsonl").rows[:6]
    base = AutoModelForImageTextToText.from_pretrained(tiny_vlm).eval()
    visual_before = {k: v.clone() for k, v in base.model.visual.state_dict().items()}
    before = _answers(base, processor, rows)
    nll_before = _answer_nll(base, processor, rows)
    tuned = PeftModel.from_pretrained(base, str(run.adapter_dir)).eval()
    after = _answers(tuned, processor, rows)
    nll_after = _answer_nll(tuned, processor, rows)
    print("base:", before, "tuned:", after, f"answer NLL {nll_before:.2f} -> {nll_after:.2f} nats/token")
    assert before != after
    assert nll_after < nll_before - 1.0
    for key, value in tuned.base_model.model.model.visual.state_dict().items():  # the tower is untouched
        assert torch.equal(value, visual_before[key])

    # the "samples" tab: answers before training and a few times during it, the last ones the adapter's own
    history = [json.loads(line) for line in (run.output_dir / "samples.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in history]
    assert steps[0] == 0 and steps[-1] == 48 and len(steps) >= 4
    first, last = history[0]["samples"], history[-1]["samples"]
    assert [s["expected"] for s in last] == ["a red circle", "a red square", "a red triangle", "a green circle"]
    assert [s["answer"] for s in first] == before[:4]
    assert all(s["answer"].startswith(a) for s, a in zip(last, after, strict=False))
    from kernel_magics.widgets.dashboard import Dashboard

    board = Dashboard(run)
    tab = board.children[3]
    assert tab.titles == ("charts", "samples") and tab.children[1] is board.samples
    assert (
        "answers at step <b>48</b>" in board.samples.value and "<img src='data:image/png;base64," in board.samples.value
    )
    board.close()


def test_vision_tower_trains_only_when_asked(one_thread, tiny_vlm) -> None:
    from kernel_magics.train.methods.vlm import load_vlm_for_training
    from kernel_magics.train.model import LoraSpec
    from kernel_magics.train.planning.plan import Plan

    plan = Plan("lora", "fp32", "cpu", 1, 1, False, "adamw_torch")
    for train_vision in (False, True):
        model = load_vlm_for_training(tiny_vlm, plan, LoraSpec(r=4, alpha=8), train_vision)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        vision = [n for n in trainable if ".visual." in n]
        language = [n for n in trainable if ".language_model." in n]
        assert language and all("lora_" in n for n in trainable)
        assert bool(vision) is train_vision
        assert not [n for n in trainable if "lm_head" in n]
    full = load_vlm_for_training(tiny_vlm, Plan("full", "fp32", "cpu", 1, 1, False, "adamw_torch"), None)
    frozen = [n for n, p in full.named_parameters() if not p.requires_grad]
    assert frozen and all(".visual." in n for n in frozen)


def test_max_pixels_bounds_image_tokens(tiny_vlm) -> None:
    from kernel_magics.data.processor import ImageTokens, load_processor

    default = ImageTokens(load_processor(tiny_vlm))
    capped = ImageTokens(load_processor(tiny_vlm, max_pixels=28 * 28 * 16))
    assert default((56, 56)) == 4
    assert default((448, 448)) == 64  # the kit's own budget: 64 merged patches
    assert capped((448, 448)) == 16


def test_bad_image_in_sft_fails_at_once_naming_the_row(tiny_vlm, shapes, workspace, tmp_path) -> None:
    import kernel_magics as km
    from kernel_magics.errors import SwiftDataError

    rows = [json.loads(line) for line in (shapes / "caption.jsonl").read_text().splitlines()]
    for row in rows:
        row["image"] = str(shapes / row["image"])
    rows[4]["image"] = str(tmp_path / "gone.png")
    with pytest.raises(SwiftDataError) as info:
        km.sft(str(tiny_vlm), rows, max_steps=1)
    assert str(info.value).startswith(f"rows row 5: image: image '{tmp_path / 'gone.png'}' does not exist")
    assert not list((workspace / "runs").glob("*/config.json"))  # nothing was started


def test_image_rows_on_a_text_model_say_so(tiny_model, shapes, workspace) -> None:
    import kernel_magics as km
    from kernel_magics.errors import SwiftConfigError

    with pytest.raises(SwiftConfigError, match="is a text-only model but the rows carry images"):
        km.sft(str(tiny_model), str(shapes / "messages.jsonl"), max_steps=1)


def test_qlora_keeps_the_vision_tower_unquantized_and_trains(one_thread, tiny_vlm, shapes, workspace) -> None:
    import kernel_magics as km
    from kernel_magics.train.methods.vlm import load_vlm_for_training
    from kernel_magics.train.planning.plan import Plan

    model = load_vlm_for_training(tiny_vlm, Plan("qlora", "fp32", "cpu", 1, 1, False, "adamw_torch"), None)
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert kinds["base_model.model.model.visual.blocks.0.attn.qkv"] == "Linear"
    assert kinds["base_model.model.model.language_model.layers.0.self_attn.q_proj.base_layer"] == "Linear4bit"
    run = km.sft(
        str(tiny_vlm), str(shapes / "messages.jsonl"), method="qlora", max_steps=4, batch_size=2, verbose=False
    )
    assert run.wait(300) == "finished", run.error
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert len(run.samples["samples"]) == 4  # sampling in between did not break 4-bit training on the CPU


def test_a_stopped_vision_run_resumes(one_thread, tiny_vlm, shapes, workspace) -> None:
    import time

    import kernel_magics as km

    run = km.sft(
        str(tiny_vlm),
        str(shapes / "caption.jsonl"),
        max_steps=16,
        batch_size=2,
        save_steps=4,
        logging_steps=1,
        verbose=False,
    )
    deadline = time.monotonic() + 120
    while run.progress.get("step", 0) < 5 and not run.done and time.monotonic() < deadline:
        time.sleep(0.1)
    run.stop()
    assert run.wait(120) == "stopped" and run.checkpoints
    step = run.progress["step"]
    assert run.resume().wait(300) == "finished", run.error
    assert run.progress["step"] == 16 > step
