"""Subcommands of training: ``sft``, ``dpo`` (and its ms-swift spelling ``rlhf --type``), ``estimate``, ``runs``.

Light module: no heavy imports. The ``Arg`` names are the keyword names of
:func:`kernel_magics.train.api.sft`, :func:`kernel_magics.train.api.dpo`, :func:`kernel_magics.train.api.rlhf`
and :func:`kernel_magics.train.estimate.estimate`.
"""

from kernel_magics.argspec import Arg, Command, csv_list

METHOD_CHOICES = ("auto", "lora", "qlora", "full")


def _optional_int(value: object) -> int | None:
    text = str(value).strip().lower()
    return None if text in ("", "none", "null") else int(text)


def _number(value: object) -> float:
    return float(str(value).strip())


_MODEL = Arg("model", short="-m", help="model: 'tiny', a local folder or a hub id [default: settings.default_model]")

SFT_ARGS = (
    _MODEL,
    Arg("dataset", short="-d", help="jsonl/json/csv/parquet file, a save_to_disk folder or a hub dataset id"),
    Arg(
        "method",
        default="auto",
        choices=METHOD_CHOICES,
        help="lora, qlora (4-bit), full, or auto (by device and memory)",
    ),
    Arg("lora_r", type=int, default=64, help="LoRA rank"),
    Arg("lora_alpha", type=int, default=128, help="LoRA alpha (scale = alpha / r)"),
    Arg("lora_dropout", type=float, default=0.05, help="dropout on the LoRA input"),
    Arg("target_modules", type=csv_list, help="modules that get LoRA, e.g. q_proj,v_proj [default: all-linear]"),
    Arg("lr", type=_number, help="learning rate [default: 2e-4 for LoRA/QLoRA, 2e-5 for full]"),
    Arg("epochs", type=_number, default=1.0, help="passes over the data (ignored when --max-steps is set)"),
    Arg("max_steps", type=_optional_int, help="stop after this many optimizer steps"),
    Arg("batch_size", type=int, default=4, help="rows per device step"),
    Arg("grad_accum", type=int, default=1, help="steps accumulated per optimizer step"),
    Arg("max_length", type=int, default=1024, help="longest row in tokens after the chat template"),
    Arg("packing", flag=True, default=False, help="pack rows into max_length sequences (padding-free)"),
    Arg("seed", type=int, default=42, help="random seed (data order, LoRA init, dropout)"),
    Arg("eval_split", type=_number, default=0.0, help="fraction of rows held out for eval loss (0: none)"),
    Arg("eval_steps", type=_number, help="evaluate every N steps (or a fraction of the run) [default: 0.2]"),
    Arg("logging_steps", type=int, default=5, help="log metrics every N steps"),
    Arg("save_steps", type=int, default=100, help="write a checkpoint every N steps"),
    Arg("save_total_limit", type=_optional_int, default=2, help="checkpoints kept (older ones are deleted)"),
    Arg("warmup_ratio", type=_number, default=0.03, help="fraction of steps with linear warm-up"),
    Arg("lr_scheduler", default="cosine", help="cosine, linear, constant, constant_with_warmup, ..."),
    Arg("weight_decay", type=_number, default=0.0, help="AdamW weight decay"),
    Arg("max_grad_norm", type=_number, default=1.0, help="gradient clipping"),
    Arg("gradient_checkpointing", flag=True, help="recompute activations to save memory [default: on for CUDA]"),
    Arg("assistant_only_loss", flag=True, default=True, help="loss only on assistant tokens (off: on every token)"),
    Arg("token_metrics", flag=True, help="also log per-token entropy and accuracy (slower steps)"),
    Arg(
        "on_bad_rows", default="error", choices=("error", "skip"), help="bad or over-long rows: stop, or skip and count"
    ),
    Arg("early_stopping_patience", type=_optional_int, help="stop when eval loss has not improved for N evals"),
    Arg("optim", help="optimizer [default: adamw_torch; paged_adamw_8bit for qlora]"),
    Arg("device", help="auto, cpu, cuda, cuda:N or mps [default: settings.device]"),
    Arg("trust_remote_code", flag=True, help="allow model code from the model's repository"),
    Arg("output_dir", short="-o", help="run folder [default: <workspace>/runs/<run-id>]"),
    Arg("train_vision", flag=True, default=False, help="vision-language models: train the vision tower too"),
    Arg("max_pixels", type=_optional_int, help="vision-language models: resize images to at most this many pixels"),
    Arg(
        "template",
        default="auto",
        choices=("auto", "messages", "vqa", "caption", "grounding"),
        help="image rows: vqa (image/question/answer), caption (image/caption), grounding (image/ref/bbox)",
    ),
)

PREFERENCE_LOSSES = ("dpo", "orpo", "kto", "simpo")  # kernel_magics.train.dpo.LOSSES
_SFT_ONLY = ("packing", "assistant_only_loss", "token_metrics", "lr", "train_vision", "max_pixels", "template")
_PREFERENCE_KNOBS = (
    Arg("adapter", help="continue this LoRA adapter (an SFT run's adapter folder) [default: a new LoRA]"),
    Arg("beta", type=_number, help="strength of the preference term [default: 0.1; 2.0 for simpo]"),
    Arg("lr", type=_number, help="learning rate [default: 5e-5 for LoRA/QLoRA, 1e-6 for full]"),
    Arg("simpo_gamma", type=_number, default=0.5, help="simpo: target reward margin"),
    Arg("desirable_weight", type=_number, default=1.0, help="kto: weight of desirable (label true) rows"),
    Arg("undesirable_weight", type=_number, default=1.0, help="kto: weight of undesirable (label false) rows"),
)


def _preference_args(loss_arg: Arg) -> tuple[Arg, ...]:
    shared = tuple(a for a in SFT_ARGS if a.name not in (*_SFT_ONLY, "model", "dataset"))
    dataset = Arg(
        "dataset",
        short="-d",
        help="prompt/chosen/rejected rows (strings or messages), conversational chosen/rejected, ms-swift "
        "messages+rejected_response, or prompt/completion/label for kto",
    )
    return (_MODEL, dataset, loss_arg, *_PREFERENCE_KNOBS, *shared)


DPO_ARGS = _preference_args(
    Arg("loss", default="dpo", choices=PREFERENCE_LOSSES, help="dpo, orpo (no reference, no SFT needed), kto, simpo")
)
RLHF_ARGS = _preference_args(
    Arg(
        "type",
        default="dpo",
        choices=PREFERENCE_LOSSES,
        help="the loss, as ms-swift's rlhf_type: dpo, orpo, kto, simpo",
    )
)

COMMANDS = [
    Command(
        name="sft",
        help="supervised fine-tuning (LoRA / QLoRA / full) in the background with a live dashboard",
        target="kernel_magics.train.api:sft",
        notebook="kernel_magics.widgets.dashboard:show",
        terminal="kernel_magics.train.api:watch",
        args=SFT_ARGS,
    ),
    Command(
        name="dpo",
        help="preference tuning (DPO, ORPO, KTO, SimPO), from a base model or continuing an SFT adapter",
        target="kernel_magics.train.api:dpo",
        notebook="kernel_magics.widgets.dashboard:show",
        terminal="kernel_magics.train.api:watch",
        args=DPO_ARGS,
    ),
    Command(
        name="rlhf",
        help="ms-swift spelling of dpo: rlhf --type dpo|orpo|kto|simpo",
        target="kernel_magics.train.api:rlhf",
        notebook="kernel_magics.widgets.dashboard:show",
        terminal="kernel_magics.train.api:watch",
        args=RLHF_ARGS,
    ),
    Command(
        name="estimate",
        help="training memory for each method from config.json alone, and whether it fits this device",
        target="kernel_magics.train.estimate:estimate",
        args=(
            Arg("model", positional=True, help="'tiny', a local folder or a hub id whose config is cached"),
            Arg("method", default="lora", choices=("lora", "qlora", "full"), help="method whose total is reported"),
            Arg("max_length", type=int, default=2048, help="tokens per row"),
            Arg("batch_size", type=int, default=1, help="rows per step"),
            Arg("lora_r", type=int, default=64, help="LoRA rank"),
            Arg("target_modules", type=csv_list, help="LoRA targets [default: all-linear]"),
            Arg("gradient_checkpointing", flag=True, help="recompute activations [default: on for CUDA]"),
            Arg("device", help="device to check against [default: settings.device]"),
            Arg(
                "dtype", choices=("bf16", "fp16", "fp32"), help="compute dtype [default: bf16 on GPUs, fp32 on the CPU]"
            ),
            Arg("image_pixels", type=int, help="vision-language models: pixels per image [default: 448x448]"),
            Arg("images_per_row", type=int, help="vision-language models: images in each row [default: 1]"),
            Arg("train_vision", flag=True, help="vision-language models: the vision tower trains too"),
        ),
    ),
    Command(
        name="dataset",
        help="look at a dataset before training: rows as the trainer sees them, their images, the bad rows",
        target="kernel_magics.data.preview:preview",
        notebook="kernel_magics.widgets.dataset_viewer:show",
        terminal="kernel_magics.data.preview:show_text",
        args=(
            Arg("dataset", positional=True, help="jsonl/json/csv/parquet file, a save_to_disk folder or a hub id"),
            Arg(
                "template",
                default="auto",
                choices=("auto", "messages", "vqa", "caption", "grounding"),
                help="image rows: how simple rows become chats",
            ),
            Arg("model", short="-m", help="model whose grounding box convention to use"),
        ),
    ),
    Command(
        name="runs",
        help="list the training runs in the workspace",
        target="kernel_magics.train.api:runs",
        args=(Arg("workspace", help="workspace folder [default: settings.workspace]"),),
    ),
]
