"""Vision-language SFT: image + text rows on a VLM (Qwen2-VL / Qwen2.5-VL, LLaVA-style, ...) with TRL.

``km.sft(model, dataset)`` comes here when ``model`` is a vision-language model (its ``config.json`` has a
``vision_config`` or its type is one transformers maps to ``AutoModelForImageTextToText``). What differs
from text SFT:

* rows are read by :func:`kernel_magics.data.vision.prepare_vision` (messages with image parts, ms-swift
  messages + images, vqa / caption / grounding templates); every image is checked before training;
* LoRA goes on the language model's linear layers only; the vision tower (and its projector) stays
  frozen unless ``train_vision=True`` (then it gets LoRA too, or is trained in full with ``method="full"``);
* the processor resizes every image within a ``max_pixels`` budget, so an image costs a bounded number
  of tokens; row lengths and the memory estimate count those image tokens;
* batches are built on the fly by :class:`VisionCollator` (images opened per batch, never all at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...argspec import knob
from ...data.processor import ImageTokens, load_processor, row_tokens
from ...data.vision import TEMPLATES
from ...errors import SwiftConfigError, SwiftDataError
from ...hub import read_model_config
from ..model import LoraSpec, load_base_for_training, ready_for_adapters
from ..planning.plan import Plan
from .sft import SFTArguments, has_generation_markers, trl_config
from .vlm_samples import SAMPLE_ROWS, SamplesCallback, as_trainer_callback, sample_rows

if TYPE_CHECKING:
    from ..runtime.run_config import RunConfig

# Module-name parts that belong to the vision side of a VLM (tower and projector).
VISION_PARTS = (
    "visual",
    "vision_tower",
    "vision_model",
    "vision_encoder",
    "image_encoder",
    "multi_modal_projector",
    "mm_projector",
)
_VISION_RE = "|".join(VISION_PARTS)


@dataclass
class VisionArguments(SFTArguments):
    """The SFT knobs plus the vision ones (``%swift sft`` takes them all; they apply to image rows)."""

    train_vision: bool = knob(False, "vision-language models: train the vision tower too")
    max_pixels: int | None = knob(None, "vision-language models: resize images to at most this many pixels")
    template: str = knob(
        "auto",
        "image rows: vqa (image/question/answer), caption (image/caption), grounding (image/ref/bbox)",
        choices=TEMPLATES,
    )

    def check(self) -> None:
        super().check()
        if self.template not in TEMPLATES:
            from ...errors import did_you_mean

            raise SwiftConfigError(
                f"template must be one of {', '.join(TEMPLATES)}, got '{self.template}'"
                f"{did_you_mean(self.template, TEMPLATES)}; fix --template"
            )
        if self.max_pixels is not None and self.max_pixels < 28 * 28:
            raise SwiftConfigError(f"max_pixels must be at least {28 * 28} (one 28x28 patch), got {self.max_pixels}")
        if self.packing:
            raise SwiftConfigError("packing is not supported for image rows; drop --packing")


@dataclass
class VisionInputs:
    """What ``build_trainer`` needs besides the weights."""

    model_path: Path
    processor: Any
    train: Any  # PreparedData
    eval: Any  # PreparedData | None
    notes: list[str]
    kind: str  # "messages" (loss on assistant turns) or "prompt_completion" (loss on the last reply)
    max_tokens: int = 0


def check_data(args: VisionArguments, model_path: Path, *, trust_remote_code: bool = False) -> Any:
    """The launcher's ``prepare`` hook: read and check the image rows (every image opened once), one line per
    problem; the processor loads in the run's thread (:func:`finish_inputs`)."""
    from ...data.vision import prepare_vision

    model_type = read_model_config(model_path).get("model_type")
    return prepare_vision(args.dataset, template=args.template, model_type=model_type, on_bad_rows=args.on_bad_rows)


def finish_inputs(
    args: VisionArguments, data: Any, model_path: Path, *, trust_remote_code: bool = False
) -> VisionInputs:
    """Load the processor, count every row's tokens (image tokens included), split off eval rows."""
    processor = load_processor(model_path, trust_remote_code, args.max_pixels)
    if getattr(processor, "chat_template", None) is None:
        raise SwiftConfigError(f"model {model_path.name} has no chat template, so image rows cannot be formatted")
    counter = ImageTokens(processor)
    sizes: dict[str, tuple[int, int]] = {}
    lengths, keep_rows, keep_labels = [], [], []
    for row, label in zip(data.rows, data.labels, strict=True):
        n = row_tokens(row, processor, counter, sizes)
        if n > args.max_length:
            problem = f"{n} tokens (images included) over max_length {args.max_length}"
            if args.on_bad_rows == "skip":
                data.skipped.append(f"{label}: {problem}")
                continue
            raise SwiftDataError(
                f"{label}: {problem}; raise --max-length, lower --max-pixels, or pass --on-bad-rows skip"
            )
        lengths.append(n)
        keep_rows.append(row)
        keep_labels.append(label)
    if not keep_rows:
        raise SwiftDataError(f"dataset {data.source}: no row fits max_length {args.max_length}; raise --max-length")
    data.rows, data.labels = keep_rows, keep_labels
    per_image = [counter(s) for s in set(sizes.values())]
    notes = [
        f"tokens per row (images included): min {min(lengths)}, mean {sum(lengths) / len(lengths):.0f}, "
        f"max {max(lengths)}; an image costs {min(per_image)}-{max(per_image)} tokens"
    ]
    kind = "messages"
    if args.assistant_only_loss and not has_generation_markers(processor):
        kind = "prompt_completion"
        data.rows = [_last_turn(r) for r in data.rows]
        notes.append("the chat template has no {% generation %} markers: loss on the last assistant reply of each row")
    data.kind = kind
    train, evaluation = data.split(args.eval_split, args.seed)
    return VisionInputs(model_path, processor, train, evaluation, notes, kind, max(lengths))


def _last_turn(row: dict[str, Any]) -> dict[str, Any]:
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": [messages[last]], "images": row["images"]}


class VisionCollator:
    """Opens each batch's images (RGB) and hands the rows to TRL's vision-language collator."""

    def __init__(self, processor: Any, max_length: int, kind: str, assistant_only_loss: bool) -> None:
        from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

        self.inner = DataCollatorForVisionLanguageModeling(
            processor=processor,
            max_length=max_length,
            completion_only_loss=kind == "prompt_completion" and assistant_only_loss,
            assistant_only_loss=kind == "messages" and assistant_only_loss,
        )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        from ...data.images import load_image

        rows = []
        for example in examples:
            row = {k: v for k, v in example.items() if k in ("messages", "prompt", "completion")}
            row["images"] = [load_image(p) for p in example["images"]]
            rows.append(row)
        return self.inner(rows)


# -- samples: the model's current answers on a few rows, a handful of times per run -------------------
def vision_module_names(model: Any) -> list[str]:
    """Names of the modules on the vision side (tower and projector)."""
    pattern = re.compile(rf"(^|\.)({_VISION_RE})(\.|$)")
    return [name for name, _ in model.named_modules() if pattern.search(name)]


def lora_targets(model: Any, train_vision: bool, wanted: list[str] | None) -> list[str]:
    """Full names of the linear layers that get LoRA: the language model's (and the vision side's when
    ``train_vision``), never the output head; ``wanted`` limits them to these leaf names (e.g. q_proj)."""
    import torch

    wanted_set = {w for w in (wanted or []) if w != "all-linear"}
    vision = re.compile(rf"(^|\.)({_VISION_RE})(\.|$)")
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) and type(module).__name__ not in ("Linear4bit", "Linear8bitLt"):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "lm_head":
            continue
        if vision.search(name) and not train_vision:
            continue
        if not wanted_set or leaf in wanted_set:
            names.append(name)
    if not names:
        raise SwiftConfigError(f"no linear layer of the model matches target_modules {sorted(wanted_set)}")
    return names


def load_vlm_for_training(
    path: Path, plan: Plan, lora: LoraSpec | None, train_vision: bool = False, trust_remote_code: bool = False
) -> Any:
    """Load a VLM for ``plan.method``; LoRA on the language model, the vision side frozen unless ``train_vision``."""
    from transformers import AutoModelForImageTextToText

    # the vision side stays in full precision (transformers matches these patterns from the name's start)
    keep = [rf".*(^|\.){part}" for part in VISION_PARTS] + ["lm_head"]
    model = load_base_for_training(path, plan, trust_remote_code, AutoModelForImageTextToText, keep)
    if plan.method == "full":
        if not train_vision:
            for name in vision_module_names(model):
                for param in model.get_submodule(name).parameters(recurse=False):
                    param.requires_grad_(False)
        return model
    from peft import LoraConfig, get_peft_model

    model = ready_for_adapters(model, plan)
    spec = lora or LoraSpec()
    wanted = spec.target_modules if isinstance(spec.target_modules, list) else None
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=lora_targets(model, train_vision, wanted),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


# -- trainer -------------------------------------------------------------------------------------------
def _vision_args(config: RunConfig) -> VisionArguments:
    return VisionArguments.from_config(config.arguments)  # type: ignore[return-value]


def build_trainer(run: Any, inputs: Any = None):  # noqa: ANN201 - trl.SFTTrainer
    """Build the ``SFTTrainer`` of a vision run in its thread (``inputs``: the rows ``sft()`` checked)."""
    import datasets
    from transformers import PrinterCallback, ProgressCallback, set_seed
    from trl import SFTTrainer

    from ...hub import resolve_model
    from ..runtime.callbacks import EarlyStopCallback

    config = run.config
    args = _vision_args(config)
    plan = config.plan
    trust = config.trust_remote_code
    model_path = resolve_model(config.model_path)
    if inputs is None and config.dataset_copy:
        args.dataset = config.dataset_copy
    data = inputs if inputs is not None else check_data(args, model_path)
    prepared = finish_inputs(args, data, model_path, trust_remote_code=trust)
    for note in prepared.notes:
        run.log(note)
    set_seed(args.seed)
    lora = None if plan.method == "full" else args.lora()
    model = load_vlm_for_training(model_path, plan, lora, args.train_vision, trust)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    side = "vision tower trained too" if args.train_vision else "vision tower frozen"
    run.log(f"model: {model_path.name}, {trainable:,} trainable of {total:,} parameters ({plan.method}, {side})")
    sft_config = trl_config(args, plan, run.output_dir, prepared.eval is not None, prepared.kind)
    sft_config.remove_unused_columns = False
    sft_config.dataset_kwargs = {"skip_prepare_dataset": True}
    collator = VisionCollator(prepared.processor, args.max_length, prepared.kind, args.assistant_only_loss)
    progress_bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        trainer = SFTTrainer(
            model=model,
            args=sft_config,
            train_dataset=prepared.train.to_dataset(),
            eval_dataset=prepared.eval.to_dataset() if prepared.eval is not None else None,
            processing_class=prepared.processor,
            data_collator=collator,
        )
    finally:
        if progress_bars:
            datasets.enable_progress_bars()
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if args.early_stopping_patience:
        trainer.add_callback(EarlyStopCallback(args.early_stopping_patience))
    trainer.add_callback(as_trainer_callback(SamplesCallback(run, prepared.processor, sample_rows(prepared))))
    return trainer


# -- what the run records ---------------------------------------------------------------------------
def run_record(args: VisionArguments, data: Any, plan: Plan) -> Any:
    """The launcher's ``record`` hook: the checked rows (image paths resolved) and the vision knobs."""
    from ..runtime.launching import in_memory
    from ..runtime.start import RunRecord, rows_summary

    vision = {"train_vision": args.train_vision, "max_pixels": args.max_pixels, "template": args.template}
    return RunRecord(
        data=rows_summary(data),
        lines=[plan.describe(), f"data: {data.summary()}; {'; '.join(data.notes)}"],
        rows=data.rows if in_memory(args.dataset) else None,
        extra={"vision": {**vision, "samples": SAMPLE_ROWS}},
    )
