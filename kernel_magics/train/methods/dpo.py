"""Preference tuning on TRL's trainers: DPO, ORPO, KTO and SimPO, optionally continuing an SFT adapter.

One loss, one TRL trainer (the losses are TRL's, never re-written here):

* ``dpo``: ``trl.DPOTrainer`` (sigmoid loss); needs a reference model
* ``kto``: ``trl.KTOTrainer`` on unpaired ``prompt``/``completion``/``label`` rows; needs a reference model
* ``orpo``: ``trl.experimental.orpo.ORPOTrainer``; no reference model, no prior SFT step needed
* ``simpo``: ``trl.experimental.cpo.CPOTrainer`` with ``loss_type="simpo"`` and ``cpo_alpha=0``; no reference

With LoRA / QLoRA the reference is never a second copy of the weights: TRL computes it with the same
model, switching to a frozen snapshot of the starting adapter (for a fresh adapter that is exactly the
base model; for an SFT adapter it is the SFT policy, so rewards start at 0). Full fine-tuning with DPO /
KTO keeps a frozen copy of the model as reference.

``PreferenceArguments`` extends :class:`~kernel_magics.train.methods.sft.SFTArguments` with the preference knobs;
``prepare_inputs`` reads and checks data, tokenizer and adapter without loading weights; ``build_trainer``
is what a :class:`~kernel_magics.train.runtime.run.Run` calls in its thread.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...argspec import knob
from ...errors import SwiftConfigError, SwiftDataError, did_you_mean
from ..arguments import training_kwargs
from ..model import LoraSpec, load_for_training, load_tokenizer
from ..planning.plan import Plan
from .continuing import adapter_folder, check_adapter_matches, load_adapter_for_training
from .sft import SFTArguments

LOSSES = ("dpo", "orpo", "kto", "simpo")
LOSS_ALIASES = {"sigmoid": "dpo", "cpo_simpo": "simpo"}
DEFAULT_BETA = {"dpo": 0.1, "orpo": 0.1, "kto": 0.1, "simpo": 2.0}
NEEDS_REFERENCE = ("dpo", "kto")
REF_ADAPTER = "ref"  # the name TRL gives its frozen snapshot of the starting adapter


def check_loss(loss: str) -> str:
    """The canonical loss name, or a one-line error with the closest valid one."""
    name = str(loss).strip().lower()
    name = LOSS_ALIASES.get(name, name)
    if name not in LOSSES:
        raise SwiftConfigError(f"--loss '{loss}' is not one of {', '.join(LOSSES)}{did_you_mean(str(loss), LOSSES)}")
    return name


def _beta_help(cls: type) -> str:
    by_value: dict[float, list[str]] = {}
    for loss, beta in DEFAULT_BETA.items():
        by_value.setdefault(beta, []).append(loss)
    return ", ".join(f"{beta:g} for {'/'.join(losses)}" for beta, losses in by_value.items())


@dataclass
class PreferenceArguments(SFTArguments):
    """Every knob of a preference-tuning run (stored in the run's config.json); the ``%swift dpo`` flags
    are made from these fields (the SFT ones, less those in ``NOT_ON_LINE``)."""

    LEARNING_RATES: ClassVar[dict[str, float]] = {"lora": 5e-5, "full": 1e-6}
    NOT_ON_LINE: ClassVar[tuple[str, ...]] = ("packing", "assistant_only_loss", "token_metrics")

    dataset: Any = knob(
        None,
        "prompt/chosen/rejected rows (strings or messages), conversational chosen/rejected, ms-swift "
        "messages+rejected_response, or prompt/completion/label for kto",
        short="-d",
    )
    loss: str = knob("dpo", "dpo, orpo (no reference, no SFT needed), kto, simpo", choices=LOSSES)
    beta: float | None = knob(None, "strength of the preference term", default_help=_beta_help)
    adapter: str | None = knob(
        None, "continue this LoRA adapter (an SFT run's adapter folder)", default_help="a new LoRA"
    )
    simpo_gamma: float = knob(0.5, "simpo: target reward margin")
    desirable_weight: float = knob(1.0, "kto: weight of desirable (label true) rows")
    undesirable_weight: float = knob(1.0, "kto: weight of undesirable (label false) rows")

    def check(self) -> None:
        """Raise a one-line error for values that cannot work (the SFT checks plus the preference ones)."""
        self.loss = check_loss(self.loss)
        super().check()
        if self.beta is not None and not self.beta > 0:
            hint = f"{DEFAULT_BETA[self.loss]:g}"
            raise SwiftConfigError(f"beta must be > 0, got {self.beta!r}; fix --beta (e.g. {hint} for {self.loss})")
        for name in ("desirable_weight", "undesirable_weight"):
            if not getattr(self, name) > 0:
                raise SwiftConfigError(
                    f"{name} must be > 0, got {getattr(self, name)!r}; fix --{name.replace('_', '-')}"
                )
        if self.simpo_gamma < 0:
            raise SwiftConfigError(f"simpo_gamma must be >= 0, got {self.simpo_gamma!r}; fix --simpo-gamma")
        if self.loss == "kto" and self.batch_size < 2:
            raise SwiftConfigError(
                f"batch_size must be >= 2 for kto (its KL term is estimated from the other rows of a batch), got "
                f"{self.batch_size}; raise --batch-size"
            )

    @property
    def beta_value(self) -> float:
        return self.beta if self.beta is not None else DEFAULT_BETA[self.loss]


# -- inputs -----------------------------------------------------------------------------------------
@dataclass
class PreferenceInputs:
    """What ``build_trainer`` needs besides the weights: checked data, tokenizer and adapter."""

    model_path: Path
    adapter_dir: Path | None
    tokenizer: Any
    train: Any  # PreparedData
    eval: Any  # PreparedData | None
    notes: list[str]


def prepare_inputs(args: PreferenceArguments, model_path: Path, *, trust_remote_code: bool = False) -> PreferenceInputs:
    """Read and check the data and the adapter, load the tokenizer, count tokens per row (no weights)."""
    from ...data.preference import (
        check_preference_lengths,
        is_conversational,
        label_counts,
        prepare_preference,
        to_conversational,
    )

    adapter_dir = adapter_folder(args.adapter) if args.adapter else None
    if adapter_dir is not None:
        check_adapter_matches(adapter_dir, model_path)
    data = prepare_preference(args.dataset, unpaired=args.loss == "kto", on_bad_rows=args.on_bad_rows)
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    notes = [f"data: {data.summary()}"]
    has_template = getattr(tokenizer, "chat_template", None) is not None
    if has_template:
        if to_conversational(data):
            notes.append("string prompts and replies are formatted with the model's chat template (as in SFT)")
    elif any(is_conversational(r) for r in data.rows):
        raise SwiftConfigError(
            f"model {model_path.name} has no chat template, so conversation rows cannot be formatted; "
            "use a chat/instruct model or plain-string prompt/chosen/rejected rows"
        )
    lengths = check_preference_lengths(data, tokenizer, args.max_length, args.on_bad_rows)
    notes.append(
        f"tokens per row (longest side) after the template: min {min(lengths)}, mean {sum(lengths) / len(lengths):.0f}, "
        f"max {max(lengths)}" + (f"; {len(data.skipped)} rows skipped" if data.skipped else "")
    )
    if args.loss == "kto":
        good, bad = label_counts(data)
        notes.append(f"kto: {good} desirable and {bad} undesirable rows")
        # KTO reads rows in order (its KL term pairs neighbours in a batch): mix the labels once, reproducibly.
        order = list(range(len(data.rows)))
        random.Random(args.seed).shuffle(order)
        data.rows, data.labels = [data.rows[i] for i in order], [data.labels[i] for i in order]
    if adapter_dir is not None:
        notes.append(f"continuing adapter {adapter_dir}; reference = its frozen starting point (no second model copy)")
    train, evaluation = data.split(args.eval_split, args.seed)
    if args.loss == "kto" and evaluation is not None:
        from ...data.preference import check_both_labels

        try:
            check_both_labels(train)
            check_both_labels(evaluation)
        except SwiftDataError as exc:
            raise SwiftDataError(f"{exc} (after --eval-split {args.eval_split}); lower --eval-split") from None
    return PreferenceInputs(model_path, adapter_dir, tokenizer, train, evaluation, notes)


# -- TRL configs and trainers -----------------------------------------------------------------------
def common_config(args: PreferenceArguments, plan: Plan, output_dir: Path, has_eval: bool) -> dict[str, Any]:
    """TrainingArguments shared by every preference trainer."""
    return {**training_kwargs(args, plan, output_dir, has_eval), "beta": args.beta_value}


def trl_config(args: PreferenceArguments, plan: Plan, output_dir: Path, has_eval: bool):  # noqa: ANN201
    """The TRL config object of ``args.loss`` (DPOConfig, KTOConfig, ORPOConfig or CPOConfig)."""
    kwargs = common_config(args, plan, output_dir, has_eval)
    if args.loss == "dpo":
        from trl import DPOConfig

        return DPOConfig(loss_type=["sigmoid"], **kwargs, **args.extra)
    if args.loss == "kto":
        from trl import KTOConfig

        return KTOConfig(
            desirable_weight=args.desirable_weight, undesirable_weight=args.undesirable_weight, **kwargs, **args.extra
        )
    if args.loss == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(remove_unused_columns=False, **kwargs, **args.extra)
    from trl.experimental.cpo import CPOConfig

    return CPOConfig(
        loss_type="simpo",
        cpo_alpha=0.0,
        simpo_gamma=args.simpo_gamma,
        remove_unused_columns=False,
        **kwargs,
        **args.extra,
    )


class PreferenceTrainerMixin:
    """What every preference trainer here adds to TRL's: a token count for trainers whose batches have no
    ``input_ids`` (ORPO / SimPO), and saved adapters without TRL's internal reference snapshot."""

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        if "input_ids" in inputs or self.args.include_num_input_tokens_seen == "no":  # type: ignore[attr-defined]
            super()._track_num_input_tokens(inputs)  # type: ignore[misc]
            return
        masks = [v for k, v in inputs.items() if k in ("chosen_attention_mask", "rejected_attention_mask")]
        if masks:
            self.state.num_input_tokens_seen += int(sum(int(m.sum()) for m in masks))  # type: ignore[attr-defined]

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)  # type: ignore[misc]
        folder = Path(output_dir or self.args.output_dir)  # type: ignore[attr-defined]
        peft_config = getattr(self.model, "peft_config", None)  # type: ignore[attr-defined]
        if isinstance(peft_config, dict) and REF_ADAPTER in peft_config and (folder / REF_ADAPTER).is_dir():
            shutil.rmtree(folder / REF_ADAPTER, ignore_errors=True)


def trainer_class(loss: str) -> type:
    """TRL's trainer for ``loss``, with :class:`PreferenceTrainerMixin`."""
    if loss == "dpo":
        from trl import DPOTrainer as base
    elif loss == "kto":
        from trl import KTOTrainer as base
    elif loss == "orpo":
        from trl.experimental.orpo import ORPOTrainer as base
    else:
        from trl.experimental.cpo import CPOTrainer as base
    return type(f"Km{base.__name__}", (PreferenceTrainerMixin, base), {})


def load_model(inputs: PreferenceInputs, args: PreferenceArguments, plan: Plan, trust: bool) -> Any:
    """The policy: the SFT adapter made trainable, a fresh LoRA, or the whole model (full)."""
    if inputs.adapter_dir is not None:
        if plan.method == "full":
            raise SwiftConfigError(
                "--adapter continues LoRA training, but the plan is full fine-tuning; use --method lora or qlora"
            )
        return load_adapter_for_training(inputs.model_path, inputs.adapter_dir, plan, trust)
    lora = (
        None
        if plan.method == "full"
        else LoraSpec(args.lora_r, args.lora_alpha, args.lora_dropout, args.target_modules)
    )
    return load_for_training(inputs.model_path, plan, lora, trust)


def _model_line(model: Any, inputs: PreferenceInputs, loss: str, method: str) -> str:
    """The run's log line about the model: trainable / all parameters, the loss, where training starts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    start = f"adapter {inputs.adapter_dir.name} of {inputs.adapter_dir.parent.name}" if inputs.adapter_dir else method
    return f"model: {inputs.model_path.name}, {trainable:,} trainable of {total:,} parameters ({loss}, {start})"


def build_trainer(run: Any, inputs: PreferenceInputs | None = None):  # noqa: ANN201 - a TRL trainer
    """Build the trainer of ``run`` for its loss (called in the run's thread; re-checks inputs on resume)."""
    import datasets
    from transformers import PrinterCallback, ProgressCallback

    from ...hub import resolve_model
    from ..runtime.callbacks import EarlyStopCallback

    config = run.config
    args = PreferenceArguments.from_config(config.arguments)
    args.loss = check_loss(args.loss)
    plan = config.plan
    trust = config.trust_remote_code
    if inputs is None:
        if config.dataset_copy:
            args.dataset = config.dataset_copy
        inputs = prepare_inputs(args, resolve_model(config.model_path), trust_remote_code=trust)
    model = load_model(inputs, args, plan, trust)
    run.log(_model_line(model, inputs, args.loss, plan.method))
    progress_bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        trainer = trainer_class(args.loss)(
            model=model,
            args=trl_config(args, plan, run.output_dir, inputs.eval is not None),
            train_dataset=inputs.train.to_dataset(),
            eval_dataset=inputs.eval.to_dataset() if inputs.eval is not None else None,
            processing_class=inputs.tokenizer,
        )
    finally:
        if progress_bars:
            datasets.enable_progress_bars()
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if args.early_stopping_patience:
        trainer.add_callback(EarlyStopCallback(args.early_stopping_patience))
    peft_config = getattr(trainer.model, "peft_config", None)
    if inputs.adapter_dir is None and isinstance(peft_config, dict) and REF_ADAPTER in peft_config:
        # TRL snapshots the starting adapter as the reference; a fresh LoRA starts as the identity (B = 0), so
        # disabling the adapter gives the same reference without the snapshot's memory and compute.
        trainer.model.delete_adapter(REF_ADAPTER)
    run.log(f"reference: {_reference(trainer, args.loss)}")
    return trainer


def _reference(trainer: Any, loss: str) -> str:
    """What the trainer compares the policy with, in words."""
    if loss not in NEEDS_REFERENCE:
        return "none (reference-free loss)"
    if getattr(trainer, "ref_model", None) is not None:
        return "a frozen copy of the model (full fine-tuning)"
    if REF_ADAPTER in getattr(trainer.model, "peft_config", {}):
        return "the frozen starting adapter on the shared base weights (no second model copy)"
    return "the base model with the adapter disabled (no second model copy)"


# -- what the run records ---------------------------------------------------------------------------
def run_record(args: PreferenceArguments, inputs: PreferenceInputs, plan: Plan) -> Any:
    """The launcher's ``record`` hook: the loss, its beta and the adapter continued, in config.json and the log."""
    from ..runtime.launching import rows_in_memory
    from ..runtime.start import RunRecord

    adapter = f", from adapter {inputs.adapter_dir}" if inputs.adapter_dir else ""
    return RunRecord(
        data={"source": inputs.train.source, "format": inputs.train.format, "notes": inputs.notes},
        lines=[f"{args.loss}: beta {args.beta_value}{adapter}", plan.describe(), *inputs.notes],
        rows=rows_in_memory(args.dataset),
        extra={"adapter": args.adapter, "loss": args.loss, "beta": args.beta_value},
    )
