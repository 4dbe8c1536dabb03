"""Online RL with GRPO on TRL's ``GRPOTrainer``: the model writes completions, reward functions score them.

``GRPOArgs`` lists every knob once (on top of the shared SFT knobs). One ``loss=`` knob covers TRL's loss
variants (the losses are TRL's, never re-written here):

* ``dapo`` (TRL's default): token losses normalised over the active tokens of the whole batch
* ``grpo``: per-sequence length normalisation (the original GRPO)
* ``dr_grpo``: a constant normaliser and no per-group std scaling (Dr. GRPO)
* ``bnpo``: normalised over the active tokens of the local batch
* ``gspo``: sequence-level importance sampling (``importance_sampling_level="sequence"``) with GSPO's
  narrow clipping (epsilon 3e-4 / 4e-4)

With LoRA the KL reference is the model with the adapter disabled (or the frozen starting adapter when
``adapter=`` continues an SFT run): never a second copy of the weights. Rollouts use transformers'
``generate`` on CPU and CUDA, or vLLM colocated in the same process on CUDA (``use_vllm``, sleeping between
rollouts). ``prepare_inputs`` checks data, rewards and adapter without loading weights; ``build_trainer`` is
what a :class:`~kernel_magics.train.runtime.run.Run` calls in its thread.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...argspec import csv_list, knob
from ...errors import SwiftConfigError, did_you_mean
from ..planning.plan import Plan
from .grpo_config import trl_config, wants_vllm
from .reward_calls import wrap
from .rewards import DEFAULT_FORMAT, NEEDS_ANSWER, SOURCE_FILE, Reward, resolve_rewards, sources_file
from .sft import SFTArguments

LOSSES = ("dapo", "grpo", "dr_grpo", "bnpo", "gspo")
SAMPLES_SHOWN = 8  # completions per logged step in the dashboard's samples table
GRPO_METRICS = (
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "completions/mean_length",
    "completions/clipped_ratio",
    "kl",
    "entropy",
    "clip_ratio/region_mean",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
)


def _floats(value: object) -> list[float]:
    return [float(v) for v in csv_list(value)]


@dataclass
class GRPOArgs(SFTArguments):
    """Every knob of a GRPO run (stored in the run's config.json); the ``%swift grpo`` flags are made from these
    fields (the SFT ones, less those in ``NOT_ON_LINE``). ``batch_size``: completions per device step, as TRL's
    ``per_device_train_batch_size``; ``max_length``: the longest prompt in tokens."""

    LEARNING_RATES: ClassVar[dict[str, float]] = {"lora": 1e-5, "full": 1e-6}
    NOT_ON_LINE: ClassVar[tuple[str, ...]] = (
        "packing", "assistant_only_loss", "token_metrics", "eval_split", "eval_steps", "early_stopping_patience",
        "padding_free",
    )  # fmt: skip

    dataset: Any = knob(None, "prompt rows: 'prompt' (text or messages) or 'messages', plus columns rewards read",
                        short="-d")  # fmt: skip
    reward: Any = knob(  # callable | list | built-in name | "module:function"; stored as specs
        None,
        "reward function(s): a name defined in the notebook, format, exact, numeric, length, or module:function",
        type=csv_list,
    )
    reward_weights: list[float] | None = knob(None, "one weight per reward, e.g. 1,0.5", type=_floats,
                                              default_help="all 1")  # fmt: skip
    reward_timeout: float = knob(60.0, "seconds one reward call may take before the run fails")
    loss: str = knob("dapo", "dapo, grpo, dr_grpo, bnpo or gspo (sequence-level)", choices=LOSSES)
    num_generations: int = knob(8, "completions sampled per prompt")
    max_completion_length: int = knob(256, "longest completion in tokens")
    beta: float = knob(0.04, "KL coefficient against the reference (0: no reference)")
    temperature: float = knob(1.0, "sampling temperature of the rollouts")
    top_p: float = knob(1.0, "nucleus sampling of the rollouts")
    epsilon: float | None = knob(None, "clipping range", default_help="0.2; 3e-4 for gspo")
    epsilon_high: float | None = knob(None, "upper clipping range", default_help="epsilon; 4e-4 for gspo")
    scale_rewards: str | None = knob(None, "advantage scaling", choices=("group", "batch", "none"),
                                     default_help="group; none for dr_grpo")  # fmt: skip
    num_iterations: int = knob(1, "optimizer passes over each generation batch")
    mask_truncated_completions: bool = knob(False, "leave completions cut at the limit out of the loss")
    adapter: str | None = knob(None, "continue this LoRA adapter (an SFT run's adapter folder)",
                               default_help="a new LoRA")  # fmt: skip
    format_pattern: str = knob(DEFAULT_FORMAT, "regex of the 'format' reward")
    length_target: int | None = knob(None, "'length' reward: tokens allowed before the penalty", default_help="half")
    use_vllm: bool | None = knob(None, "rollouts with vLLM colocated in this process",
                                 default_help="on CUDA if installed")  # fmt: skip
    vllm_gpu_memory_utilization: float = knob(0.3, "share of GPU memory vLLM may take")
    batch_size: int = knob(8, "completions per device step (x grad_accum: a multiple of num_generations)")
    max_length: int = knob(512, "longest prompt in tokens after the chat template")
    logging_steps: int = knob(1, "log metrics and samples every N steps")
    extra: dict[str, Any] = field(default_factory=dict, metadata={"cli": False})

    def check(self) -> None:
        """The SFT checks plus the GRPO ones; one line each."""
        self.loss = str(self.loss).strip().lower().replace("-", "_")
        if self.loss not in LOSSES:
            raise SwiftConfigError(
                f"--loss '{self.loss}' is not one of {', '.join(LOSSES)}{did_you_mean(self.loss, LOSSES)}"
            )
        super().check()
        if self.num_generations < 2:
            raise SwiftConfigError(
                f"num_generations must be >= 2 (GRPO compares completions of one prompt), got {self.num_generations}"
            )
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise SwiftConfigError(
                f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple of num_generations "
                f"({self.num_generations}): each prompt's completions train together; e.g. --batch-size {self.num_generations}"
            )
        for name, ok, rule in (
            ("max_completion_length", self.max_completion_length >= 1, ">= 1 token"),
            ("beta", self.beta >= 0, ">= 0 (0: no KL term, no reference)"),
            ("temperature", self.temperature > 0, "> 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("num_iterations", self.num_iterations >= 1, ">= 1"),
            ("reward_timeout", self.reward_timeout > 0, "> 0 seconds"),
            ("vllm_gpu_memory_utilization", 0 < self.vllm_gpu_memory_utilization < 1, "in (0, 1)"),
        ):
            if not ok:
                raise SwiftConfigError(
                    f"{name} must be {rule}, got {getattr(self, name)!r}; fix --{name.replace('_', '-')}"
                )
        if self.scale_rewards is not None and self.scale_rewards not in ("group", "batch", "none"):
            raise SwiftConfigError(f"scale_rewards must be group, batch or none, got {self.scale_rewards!r}")

    def to_config(self) -> dict[str, Any]:
        data = super().to_config()
        reward = self.reward if isinstance(self.reward, (list, tuple)) else [self.reward]
        data["reward"] = [
            r if isinstance(r, str) else f"{SOURCE_FILE}:{getattr(r, '__name__', type(r).__name__)}" for r in reward
        ]
        return data


# -- inputs ------------------------------------------------------------------------------------------
@dataclass
class GRPOInputs:
    """What ``build_trainer`` needs besides the weights: checked prompts, tokenizer, rewards, adapter."""

    model_path: Path
    adapter_dir: Path | None
    tokenizer: Any
    train: Any  # PreparedData of prompt rows
    rewards: list[Reward]
    notes: list[str]


def rewards_of(args: GRPOArgs, base: Path | None = None) -> list[Reward]:
    """``args.reward`` resolved and checked against ``reward_weights``."""
    rewards = resolve_rewards(
        args.reward,
        format_pattern=args.format_pattern,
        length_target=args.length_target,
        max_completion_length=args.max_completion_length,
        base=base,
    )
    if args.reward_weights is not None and len(args.reward_weights) != len(rewards):
        raise SwiftConfigError(
            f"reward_weights has {len(args.reward_weights)} values for {len(rewards)} rewards "
            f"({', '.join(r.name for r in rewards)}); give one weight per reward"
        )
    return rewards


def prepare_inputs(
    args: GRPOArgs, model_path: Path, *, trust_remote_code: bool = False, rewards: list[Reward] | None = None
) -> GRPOInputs:
    """Resolve the rewards (unless given: the live functions on resume), read and check the prompts and the
    adapter, load the tokenizer, count prompt tokens (no weights)."""
    from ...data.prepare import check_lengths
    from ...data.prompts import prepare_prompts, prompt_length, to_conversational_prompts
    from ..model import load_tokenizer
    from .continuing import adapter_folder, check_adapter_matches

    rewards = rewards if rewards is not None else rewards_of(args)
    adapter_dir = adapter_folder(args.adapter) if args.adapter else None
    if adapter_dir is not None:
        check_adapter_matches(adapter_dir, model_path)
    required = ("answer",) if any(r.spec in NEEDS_ANSWER for r in rewards) else ()
    data = prepare_prompts(args.dataset, on_bad_rows=args.on_bad_rows, required=required)
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    notes = [f"data: {data.summary()}"]
    if getattr(tokenizer, "chat_template", None) is not None:
        if to_conversational_prompts(data):
            notes.append("string prompts are formatted with the model's chat template (as in SFT)")
    elif any(isinstance(r["prompt"], list) for r in data.rows):
        raise SwiftConfigError(
            f"model {model_path.name} has no chat template, so message prompts cannot be formatted; "
            "use a chat/instruct model or plain-string prompts"
        )
    lengths = check_lengths(data, tokenizer, args.max_length, args.on_bad_rows, measure=prompt_length)
    notes.append(
        f"prompt tokens after the template: min {min(lengths)}, mean {sum(lengths) / len(lengths):.0f}, max "
        f"{max(lengths)}; up to {args.max_completion_length} generated, {args.num_generations} per prompt"
    )
    weights = args.reward_weights or [1.0] * len(rewards)
    notes.append("rewards: " + ", ".join(f"{r.name} (x{w:g})" for r, w in zip(rewards, weights, strict=True)))
    if adapter_dir is not None:
        notes.append(f"continuing adapter {adapter_dir}; KL reference = its frozen starting point")
    return GRPOInputs(model_path, adapter_dir, tokenizer, data, rewards, notes)


# -- TRL config and trainer ---------------------------------------------------------------------------
def register_metrics(rewards: list[Reward]) -> None:
    """Let the run's metric rows keep the GRPO metrics (TRL's names), per reward function too."""
    from ..runtime.callbacks import METRIC_KEYS

    keys = [*GRPO_METRICS, *(f"rewards/{r.name}/{s}" for r in rewards for s in ("mean", "std"))]
    METRIC_KEYS.update({key: key for key in keys if key not in METRIC_KEYS})


def trainer_class() -> type:
    """TRL's ``GRPOTrainer`` that also publishes a few scored completions per logged step and saves
    adapters without TRL's internal reference snapshot."""
    from trl import GRPOTrainer

    from .dpo import REF_ADAPTER

    class KmGRPOTrainer(GRPOTrainer):
        samples_sink: Any = None

        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            super()._save(output_dir, state_dict)
            folder = Path(output_dir or self.args.output_dir)
            peft_config = getattr(self.model, "peft_config", None)
            if isinstance(peft_config, dict) and REF_ADAPTER in peft_config and (folder / REF_ADAPTER).is_dir():
                shutil.rmtree(folder / REF_ADAPTER, ignore_errors=True)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            super().log(logs, start_time)
            if self.samples_sink is not None and self.model.training and "loss" in logs:
                self.samples_sink(self.state.global_step, self._logs)

    return KmGRPOTrainer


def build_trainer(run: Any, inputs: GRPOInputs | None = None):  # noqa: ANN201 - a TRL trainer
    """Build the GRPO trainer of ``run`` (called in the run's thread; re-checks inputs on resume)."""
    import datasets
    from transformers import PrinterCallback, ProgressCallback

    from ...hub import resolve_model
    from .dpo import REF_ADAPTER, load_model
    from .grpo_samples import SamplesSink

    config = run.config
    args = GRPOArgs.from_config(config.arguments)
    plan = config.plan
    trust = config.trust_remote_code
    if inputs is None:  # resume: the live functions when this process has them, else the saved sources
        if config.dataset_copy:
            args.dataset = config.dataset_copy
        rewards = getattr(run, "reward_objects", None) or rewards_of(args, base=run.output_dir)
        inputs = prepare_inputs(args, resolve_model(config.model_path), trust_remote_code=trust, rewards=rewards)
    model = load_model(inputs, args, plan, trust)
    register_metrics(inputs.rewards)
    progress_bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        trainer = trainer_class()(
            model=model,
            reward_funcs=wrap(inputs.rewards, args.reward_timeout, run.stop_request),
            args=trl_config(args, plan, run.output_dir),
            train_dataset=inputs.train.to_dataset(),
            processing_class=inputs.tokenizer,
        )
    finally:
        if progress_bars:
            datasets.enable_progress_bars()
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    peft_config = getattr(trainer.model, "peft_config", None)
    if inputs.adapter_dir is None and isinstance(peft_config, dict) and REF_ADAPTER in peft_config:
        trainer.model.delete_adapter(REF_ADAPTER)  # a fresh LoRA starts as the identity: disabling it is the reference
    trainer.samples_sink = SamplesSink(run, args.reward_weights, SAMPLES_SHOWN)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rollout = "vLLM (colocated)" if trainer.args.use_vllm else "transformers generate"
    run.log(
        f"model: {inputs.model_path.name}, {trainable:,} trainable parameters; rollouts: {rollout}; loss {args.loss}"
    )
    return trainer


# -- what the run records ---------------------------------------------------------------------------
def run_record(args: GRPOArgs, inputs: GRPOInputs, plan: Plan) -> Any:
    """The launcher's ``record`` hook: loss, rollouts and rewards in config.json and the log; once the run
    folder exists, the rewards' sources as ``rewards.py`` and the live functions on the run (for a resume in
    this process)."""
    from ..runtime.launching import rows_in_memory
    from ..runtime.records import atomic_write
    from ..runtime.start import RunRecord

    rollout = "vLLM colocated (sleeps between rollouts)" if wants_vllm(args, plan) else "transformers generate"
    source, source_notes = sources_file(inputs.rewards)
    unsaved = [r.name for r in inputs.rewards if r.spec.startswith(SOURCE_FILE + ":") and r.source is None]
    if unsaved and args.where != "kernel":
        raise SwiftConfigError(
            f"reward {unsaved[0]} has no source the run's own process can load (a lambda, partial, callable object "
            "or code typed without a file); define it with def in a cell or a module, or pass where='kernel'"
        )
    args.reward = [r.spec for r in inputs.rewards]
    head = f"grpo: {args.loss}, beta {args.beta}, {args.num_generations} generations per prompt; rollouts: {rollout}"

    def written(run: Any) -> None:
        atomic_write(run.output_dir / SOURCE_FILE, source)
        run.reward_objects = inputs.rewards

    rewards = [r.name for r in inputs.rewards]
    return RunRecord(
        data={"source": inputs.train.source, "format": inputs.train.format, "notes": inputs.notes},
        lines=[head, plan.describe(), *inputs.notes, *source_notes],
        rows=rows_in_memory(args.dataset),
        extra={
            "adapter": args.adapter,
            "loss": args.loss,
            "beta": args.beta,
            "rewards": rewards,
            "reward_file": SOURCE_FILE,
        },
        written=written,
    )
