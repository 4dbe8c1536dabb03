"""Supervised fine-tuning on TRL's ``SFTTrainer``: the SFT knobs, input checks and the trainer builder.

``SFTArguments`` lists every knob once (TRL names where they exist; ``lr`` is ``learning_rate``,
``epochs`` is ``num_train_epochs``, ``batch_size`` is ``per_device_train_batch_size``, ``grad_accum`` is
``gradient_accumulation_steps``). ``check_data`` reads and validates the rows in the caller's thread, so bad
input fails at once; ``finish_inputs`` (tokenizer, templated lengths) runs in the run's thread. ``build_trainer`` is what a
:class:`~kernel_magics.train.runtime.run.Run` calls in its thread.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...argspec import knob
from ...data.prepare import ON_BAD_ROWS
from ...errors import SwiftConfigError, SwiftError
from ..arguments import training_kwargs
from ..model import LoraSpec, load_for_training, load_tokenizer
from ..planning.levers import LIGER_CHOICES
from ..planning.plan import DTYPES, METHODS, Plan
from ..runtime.distributed import DistributedArguments
from .packing import has_varlen_attention, use_packed_rows

if TYPE_CHECKING:
    from ...data.prepare import PreparedData

LR_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_min_lr", "polynomial")
_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")


def _lr_help(cls: type) -> str:
    rates = cls.LEARNING_RATES  # type: ignore[attr-defined]
    return f"{rates['lora']:g} for LoRA/QLoRA, {rates['full']:g} for full"


@dataclass
class SFTArguments(DistributedArguments):
    """Every knob of an SFT run (stored in the run's config.json): the single source of each name, default,
    help and choices; the ``%swift sft`` flags are made from these fields."""

    LEARNING_RATES: ClassVar[dict[str, float]] = {"lora": 2e-4, "full": 2e-5}  # when lr is None, by method
    EVAL_EVERY: ClassVar[float] = 0.2  # eval_steps when None: a fraction of the run
    NOT_ON_LINE: ClassVar[tuple[str, ...]] = ()  # inherited fields a subclass's command does not take

    model: str | None = knob(
        None, "model: 'tiny', a local folder or a hub id", short="-m", default_help="settings.default_model"
    )
    dataset: Any = knob(None, "jsonl/json/csv/parquet file, a save_to_disk folder or a hub dataset id", short="-d")
    method: str = knob("auto", "lora, qlora (4-bit), full, or auto (by device and memory)", choices=METHODS)
    dtype: str = knob(
        "auto",
        "weights and compute: bf16, fp16, fp32, or auto (bf16/fp16 on GPUs; bf16 on CPUs with native bf16, else fp32)",
        choices=DTYPES,
    )
    lora_r: int = knob(LoraSpec.r, "LoRA rank")
    lora_alpha: int = knob(LoraSpec.alpha, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = knob(LoraSpec.dropout, "dropout on the LoRA input")
    target_modules: list[str] | None = knob(
        None, "modules that get LoRA, e.g. q_proj,v_proj", default_help="all-linear"
    )
    lr: float | None = knob(None, "learning rate", default_help=_lr_help)
    epochs: float = knob(1.0, "passes over the data (ignored when --max-steps is set)")
    max_steps: int | None = knob(None, "stop after this many optimizer steps")
    batch_size: int = knob(4, "rows per device step")
    grad_accum: int = knob(1, "steps accumulated per optimizer step")
    max_length: int = knob(1024, "longest row in tokens after the chat template")
    packing: bool = knob(False, "pack rows into max_length sequences (padding-free)")
    seed: int = knob(42, "random seed (data order, LoRA init, dropout)")
    eval_split: float = knob(0.0, "fraction of rows held out for eval loss (0: none)")
    eval_steps: float | None = knob(
        None, "evaluate every N steps (or a fraction of the run)", default_help=lambda cls: str(cls.EVAL_EVERY)
    )
    logging_steps: int = knob(5, "log metrics every N steps")
    save_steps: int = knob(100, "write a checkpoint every N steps")
    save_total_limit: int | None = knob(2, "checkpoints kept (older ones are deleted)")
    warmup_ratio: float = knob(0.03, "fraction of steps with linear warm-up")
    lr_scheduler: str = knob("cosine", "cosine, linear, constant, constant_with_warmup, ...")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    max_grad_norm: float = knob(1.0, "gradient clipping")
    gradient_checkpointing: bool | None = knob(None, "recompute activations to save memory", default_help="on for CUDA")
    assistant_only_loss: bool = knob(True, "loss only on assistant tokens (off: on every token)")
    token_metrics: bool = knob(False, "also log per-token entropy and accuracy (TRL's loss path, slower steps)")
    on_bad_rows: str = knob("error", "bad or over-long rows: stop, or skip and count", choices=ON_BAD_ROWS)
    early_stopping_patience: int | None = knob(None, "stop when eval loss has not improved for N evals")
    optim: str | None = knob(
        None,
        "optimizer: adamw_torch, adamw_torch_fused, adamw_8bit, paged_adamw_8bit, ... (transformers' names)",
        default_help="adamw_torch on the CPU, adamw_torch_fused on CUDA; paged_adamw_8bit for qlora",
    )
    compile: bool = knob(False, "torch.compile the model for training (the first step is slower: one-off compilation)")
    use_liger_kernel: str = knob(
        "auto",
        "Liger's Triton kernels (RMSNorm, RoPE, SwiGLU): on, off, or auto (on for supported models on CUDA when "
        "liger-kernel is installed)",
        choices=LIGER_CHOICES,
    )
    padding_free: bool = knob(False, "batches without padding: rows concatenated, FlashAttention-2 varlen (CUDA)")
    device: str | None = knob(None, "auto, cpu, cuda, cuda:N or mps", default_help="settings.device")
    trust_remote_code: bool | None = knob(None, "allow model code from the model's repository")
    output_dir: str | None = knob(None, "run folder", short="-o", default_help="<workspace>/runs/<run-id>")
    extra: dict[str, Any] = field(default_factory=dict, metadata={"cli": False})  # more TRL config options

    def check(self) -> None:
        """Raise a one-line :class:`SwiftConfigError` for values that cannot work."""

        def bad(name: str, rule: str) -> SwiftConfigError:
            return SwiftConfigError(
                f"{name} must be {rule}, got {getattr(self, name)!r}; fix --{name.replace('_', '-')}"
            )

        if self.lr is not None and not self.lr > 0:
            raise bad(
                "lr", f"> 0 (e.g. {self.LEARNING_RATES['lora']:g} for LoRA, {self.LEARNING_RATES['full']:g} for full)"
            )
        if not self.epochs > 0:
            raise bad("epochs", "> 0")
        if self.max_steps is not None and self.max_steps <= 0:
            raise bad("max_steps", "a positive number of optimizer steps")
        for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha", "logging_steps", "save_steps"):
            if int(getattr(self, name)) < 1:
                raise bad(name, ">= 1")
        if not 0 <= self.lora_dropout < 1:
            raise bad("lora_dropout", "in [0, 1)")
        if not 0 <= self.eval_split < 1:
            raise bad("eval_split", "a fraction in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", "a fraction in [0, 1)")
        if self.max_length < 8:
            raise bad("max_length", ">= 8 tokens")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise bad("lr_scheduler", "one of " + ", ".join(LR_SCHEDULERS))
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise bad("early_stopping_patience", ">= 1")
        self.check_distributed()

    def learning_rate(self, method: str) -> float:
        return self.lr if self.lr is not None else self.LEARNING_RATES["full" if method == "full" else "lora"]

    def lora(self) -> LoraSpec:
        return LoraSpec(self.lora_r, self.lora_alpha, self.lora_dropout, self.target_modules)

    def to_config(self) -> dict[str, Any]:
        data = asdict(self)
        if not isinstance(self.dataset, (str, Path)) and self.dataset is not None:
            data["dataset"] = f"<{type(self.dataset).__name__}>"
        elif self.dataset is not None:
            data["dataset"] = (
                str(Path(str(self.dataset)).expanduser().resolve())
                if Path(str(self.dataset)).exists()
                else str(self.dataset)
            )
        return data

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SFTArguments:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


@dataclass
class SFTInputs:
    """What ``build_trainer`` needs besides the weights: checked data and the tokenizer."""

    model_path: Path
    tokenizer: Any
    train: Any  # PreparedData
    eval: Any  # PreparedData | None
    notes: list[str]
    longest: int = 0  # tokens of the longest row after the template


def has_generation_markers(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return bool(_GENERATION_TAG.search(template if isinstance(template, str) else str(template)))


def to_last_turn_completion(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversations -> conversational prompt/completion rows (loss on the last assistant reply)."""
    out = []
    for row in rows:
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        out.append({"prompt": messages[:last], "completion": [messages[last]]})
    return out


def check_data(args: SFTArguments) -> PreparedData:
    """Read and validate the rows (pure Python: runs in the caller's thread, before anything heavy)."""
    from ...data.prepare import prepare

    return prepare(args.dataset, on_bad_rows=args.on_bad_rows)


def finish_inputs(
    args: SFTArguments, data: PreparedData, model_path: Path, *, trust_remote_code: bool = False
) -> SFTInputs:
    """Load the tokenizer, apply the chat template and count tokens per row, split off the eval rows."""
    from ...data.prepare import check_lengths

    tokenizer = load_tokenizer(model_path, trust_remote_code)
    notes: list[str] = []
    if data.kind == "messages" and getattr(tokenizer, "chat_template", None) is None:
        raise SwiftConfigError(
            f"model {model_path.name} has no chat template, so conversation rows cannot be formatted; "
            "use a chat/instruct model or 'text' / 'prompt'+'completion' rows"
        )
    skipped_before = len(data.skipped)
    lengths = check_lengths(data, tokenizer, args.max_length, args.on_bad_rows)
    if data.kind == "messages" and args.assistant_only_loss and not has_generation_markers(tokenizer):
        data.rows = to_last_turn_completion(data.rows)
        data.kind = "prompt_completion"
        notes.append("the chat template has no {% generation %} markers: loss on the last assistant reply of each row")
    skipped = len(data.skipped) - skipped_before
    notes.append(
        f"tokens per row after the template: min {min(lengths)}, mean {sum(lengths) / len(lengths):.0f}, "
        f"max {max(lengths)}" + (f"; {skipped} rows over max_length skipped" if skipped else "")
    )
    train, evaluation = data.split(args.eval_split, args.seed)
    return SFTInputs(model_path, tokenizer, train, evaluation, notes, max(lengths))


def prepare_inputs(args: SFTArguments, model_path: Path, *, trust_remote_code: bool = False) -> PreparedData:
    """The launcher's ``prepare`` hook: the rows read and checked in the caller's thread (the tokenizer loads
    in the run's thread, :func:`finish_inputs`); image rows for a text model are refused in one line."""
    try:
        return check_data(args)
    except SwiftError as exc:
        raise text_model_data_error(str(args.model or model_path.name), args.dataset) or exc from None


def text_model_data_error(model_name: str, dataset: Any) -> SwiftConfigError | None:
    """The error for image rows given to a text-only model (None when the rows carry no images)."""
    from ...data.vision import is_vision_dataset

    if dataset is not None and is_vision_dataset(dataset):
        return SwiftConfigError(
            f"model {model_name} is a text-only model but the rows carry images; pick a vision-language model "
            "(e.g. Qwen/Qwen2-VL-2B-Instruct) or drop the images"
        )
    return None


def run_record(args: SFTArguments, data: PreparedData, plan: Plan) -> Any:
    """The launcher's ``record`` hook: the rows' summary, in-memory rows kept as ``dataset.jsonl``."""
    from ..runtime.launching import rows_in_memory
    from ..runtime.start import RunRecord, rows_summary

    lines = [plan.describe(), f"data: {data.summary()}"]
    return RunRecord(data=rows_summary(data), lines=lines, rows=rows_in_memory(args.dataset))


def trl_config(  # noqa: ANN201 - trl.SFTConfig
    args: SFTArguments,
    plan: Plan,
    output_dir: Path,
    has_eval: bool,
    kind: str = "messages",
    max_length: int | None = None,
):
    """The ``trl.SFTConfig`` for these arguments and plan (``max_length``: packed row length, if shorter)."""
    from trl import SFTConfig

    kwargs = training_kwargs(args, plan, output_dir, has_eval, max_length)
    if plan.padding_free:
        kwargs["padding_free"] = True
    kwargs.update(
        packing=args.packing,
        assistant_only_loss=args.assistant_only_loss and kind == "messages",
        completion_only_loss=args.assistant_only_loss,
    )
    return SFTConfig(**{**kwargs, **args.extra})  # extra TRL options win over ours


def packed_row_length(args: SFTArguments, inputs: SFTInputs, model: Any) -> int:
    """How long packed rows are: ``max_length``, or on attention without a variable-length kernel (see
    :mod:`.packing`) just long enough for the longest conversation, since each row's attention costs the
    square of its length and no conversation needs more."""
    if not args.packing or has_varlen_attention(model):
        return args.max_length
    return min(args.max_length, inputs.longest + 8)  # a few tokens of slack for the trainer's own EOS


def make_trainer(
    trainer_class: Any, model: Any, args: SFTArguments, plan: Plan, output_dir: Path, inputs: SFTInputs, row_length: int
) -> Any:
    return trainer_class(
        model=model,
        args=trl_config(args, plan, output_dir, inputs.eval is not None, inputs.train.kind, row_length),
        train_dataset=inputs.train.to_dataset(),
        eval_dataset=inputs.eval.to_dataset() if inputs.eval is not None else None,
        processing_class=inputs.tokenizer,
    )


def longest_packed(trainer: Any) -> int:
    """Tokens of the longest conversation in the trainer's packed training rows."""
    return max(max(lengths) for lengths in trainer.train_dataset["seq_lengths"])


def build_trainer(run: Any, inputs: PreparedData | None = None):  # noqa: ANN201 - trl.SFTTrainer
    """Build the ``SFTTrainer`` of ``run`` in its thread: ``inputs`` are the rows ``sft()`` checked
    (None on resume: read and checked again from the run's config)."""
    import datasets
    from transformers import PrinterCallback, ProgressCallback, set_seed

    from ...hub import resolve_model
    from ..runtime.callbacks import EarlyStopCallback
    from .sft_loss import LabelledLogitsSFTTrainer

    config = run.config
    args = SFTArguments.from_config(config.arguments)
    plan = config.plan
    trust = config.trust_remote_code
    if inputs is None and config.dataset_copy:
        args.dataset = config.dataset_copy
    data = inputs if inputs is not None else check_data(args)
    inputs = finish_inputs(args, data, resolve_model(config.model_path), trust_remote_code=trust)
    for note in inputs.notes:
        run.log(note)
    set_seed(args.seed)  # LoRA initialisation is random: same seed, same run
    model = load_for_training(inputs.model_path, plan, None if plan.method == "full" else args.lora(), trust)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    run.log(f"model: {inputs.model_path.name}, {trainable:,} trainable of {total:,} parameters ({plan.method})")
    row_length = packed_row_length(args, inputs, model)
    progress_bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    trainer_class = functools.partial(LabelledLogitsSFTTrainer, token_metrics=args.token_metrics)
    try:
        trainer = make_trainer(trainer_class, model, args, plan, run.output_dir, inputs, row_length)
        if row_length < args.max_length and longest_packed(trainer) >= row_length:
            # the trainer's own template counted more tokens than ours: keep every row whole
            row_length = args.max_length
            trainer = make_trainer(trainer_class, model, args, plan, run.output_dir, inputs, row_length)
    finally:
        if progress_bars:
            datasets.enable_progress_bars()
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if trainer.labelled_loss_off is not None:
        run.log(f"loss: TRL's fused LM head ({trainer.labelled_loss_off})")
    note = use_packed_rows(trainer)
    if note:
        run.log(note)
    if args.early_stopping_patience:
        trainer.add_callback(EarlyStopCallback(args.early_stopping_patience))
    return trainer
