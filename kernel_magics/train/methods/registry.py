"""The training methods: one :class:`TrainingMethod` per subcommand, the only list of them.

An entry names, as ``"module:attribute"`` strings imported on first use (so this module stays light):

* ``arguments``: the argument dataclass, the single source of every knob (name, type, default, help,
  choices); the subcommand's flags and the public function's keywords are made from its fields
  (:func:`kernel_magics.argspec.args_from`, :func:`kernel_magics.signatures.from_arguments`);
* ``api``: the public function (``km.<name>``), which hands the filled dataclass to
  :func:`kernel_magics.train.runtime.start.launch`;
* ``prepare``: ``prepare(args, model_path, *, trust_remote_code) -> inputs``, run by the launcher in the
  caller's thread so bad input fails at once (rows read and checked; no weights);
* ``record``: ``record(args, inputs, plan) -> RunRecord``, what the run's ``config.json`` and first log lines
  add (data summary, in-memory rows to keep, extra keys, files written into the run folder);
* ``trainer``: ``build_trainer(run, inputs)``, called in the run's thread with what ``prepare`` returned
  (``None`` on resume and in a process group's ranks: it prepares again from the run's config).

and, as plain data, the ``variants`` of one method (the values of its ``variant`` argument, e.g. the
preference losses; a run's ``kind``), the sequences one row puts through the model per kind (a preference
pair: 2) for the memory estimate, the dashboard's third row of charts per variant (``panels``: the metric
keys of each chart), the ``metrics`` that the terminal view prints after the loss, the arguments whose
values may name functions defined in the notebook (``%%swift grpo --reward my_fn``), ``on_images``: the
entry that trains this method when the model is a vision-language model, ``samples_panel``: the dashboard's
samples tab, and ``function_panels``: charts with one trace per function the run names (GRPO's rewards). ``config.json`` stores the
subcommand as ``command`` and the variant as ``kind``; ``export-script``, the dashboard and ``watch`` look
the run up here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ...argspec import Arg, Command, args_from, load
from ...errors import SwiftUsageError, did_you_mean

if TYPE_CHECKING:
    from ..runtime.run_config import RunConfig


@dataclass(frozen=True)
class TrainingMethod:
    """One training method: a subcommand, its arguments, its trainer and what its runs show."""

    name: str  # subcommand, km.<name> and config.json "command"
    help: str
    arguments: str  # "module:Class" argument dataclass: the keywords and flags
    api: str  # "module:function" public function
    trainer: str  # "module:function" build_trainer(run, inputs)
    prepare: str  # "module:function" prepare(args, model_path, *, trust_remote_code) -> inputs
    record: str  # "module:function" record(args, inputs, plan) -> start.RunRecord
    variant: str | None = None  # the argument that picks a variant ("loss"); None: one kind, the name
    panels: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)  # by kind: row 3's charts
    metrics: tuple[tuple[str, str], ...] = ()  # (metric key, label) printed after the loss by `watch`
    aliases: tuple[tuple[str, str, str], ...] = ()  # (subcommand, its name for the variant, "module:function")
    sequences_per_row: Mapping[str, int] = field(default_factory=dict)  # by kind, when not 1 (a pair: 2)
    notebook_functions: tuple[str, ...] = ()  # arguments whose names may be functions defined in the notebook
    run_arguments: str | None = None  # "module:Class" the run keeps, when narrower than ``arguments``
    on_images: TrainingMethod | None = None  # the entry that trains on a vision-language model
    samples_panel: str | None = None  # "module:Class" of the dashboard's samples tab (a widget of run), if any
    # charts that follow the run's own functions (GRPO's rewards): (keys, per-function key pattern, title)
    function_panels: tuple[tuple[tuple[str, ...], str | None, str], ...] = ()
    functions_field: str | None = None  # the RunConfig field naming those functions ("rewards")

    def argument_class(self) -> type:
        return load(self.arguments)

    def kind_of(self, args: Any) -> str:
        """The ``kind`` a run of these arguments records: the variant's value, or the method's name."""
        return str(getattr(args, self.variant)) if self.variant else self.name

    @property
    def kinds(self) -> tuple[str, ...]:
        """The ``kind`` s its runs record: the variant's choices, or the method's name."""
        if self.variant is None:
            return (self.name,)
        import dataclasses

        spec = next(f for f in dataclasses.fields(self.argument_class()) if f.name == self.variant)
        return tuple(spec.metadata["choices"])


_REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/margins")

# SFT on a vision-language model: the same subcommand, function and keywords; its own hooks (train/methods/vlm.py)
_SFT_ON_IMAGES = TrainingMethod(
    name="sft",
    help="supervised fine-tuning (LoRA / QLoRA / full) in the background with a live dashboard",
    arguments="kernel_magics.train.methods.vlm:VisionArguments",
    api="kernel_magics.train.api:sft",
    trainer="kernel_magics.train.methods.vlm:build_trainer",
    prepare="kernel_magics.train.methods.vlm:check_data",
    record="kernel_magics.train.methods.vlm:run_record",
    samples_panel="kernel_magics.widgets.samples:SamplesPanel",  # the model's current answers on a few images
)

METHODS: tuple[TrainingMethod, ...] = (
    replace(
        _SFT_ON_IMAGES,
        trainer="kernel_magics.train.methods.sft:build_trainer",
        prepare="kernel_magics.train.methods.sft:prepare_inputs",
        record="kernel_magics.train.methods.sft:run_record",
        run_arguments="kernel_magics.train.methods.sft:SFTArguments",  # a text run keeps no vision knobs
        on_images=_SFT_ON_IMAGES,
    ),
    TrainingMethod(
        name="dpo",
        help="preference tuning (DPO, ORPO, KTO, SimPO), from a base model or continuing an SFT adapter",
        arguments="kernel_magics.train.methods.dpo:PreferenceArguments",
        api="kernel_magics.train.api:dpo",
        trainer="kernel_magics.train.methods.dpo:build_trainer",
        prepare="kernel_magics.train.methods.dpo:prepare_inputs",
        record="kernel_magics.train.methods.dpo:run_record",
        variant="loss",
        panels={
            loss: (_REWARDS, ("rewards/accuracies",), own)
            for loss, own in (
                ("dpo", ("logps/chosen", "logps/rejected")),
                ("simpo", ("logps/chosen", "logps/rejected")),
                ("orpo", ("log_odds_ratio",)),
                ("kto", ("kl",)),
            )
        },
        metrics=(("rewards/margins", "margin"), ("rewards/accuracies", "acc"), ("kl", "kl")),
        aliases=(("rlhf", "type", "kernel_magics.train.api:rlhf"),),
        sequences_per_row={"dpo": 2, "simpo": 2, "orpo": 2},  # a pair is two sequences; kto rows are one
    ),
    TrainingMethod(
        name="grpo",
        help="online RL: GRPO (and DAPO, Dr. GRPO, GSPO) with reward functions written in the notebook",
        arguments="kernel_magics.train.methods.grpo:GRPOArgs",
        api="kernel_magics.train.api:grpo",
        trainer="kernel_magics.train.methods.grpo:build_trainer",
        prepare="kernel_magics.train.methods.grpo:prepare_inputs",
        record="kernel_magics.train.methods.grpo:run_record",
        metrics=(("reward", "reward"), ("reward_std", "reward_std"), ("kl", "kl")),
        notebook_functions=("reward",),
        samples_panel="kernel_magics.widgets.grpo_samples:GRPOSamplesPanel",  # the latest scored completions
        function_panels=(  # TRL's keys: one trace per reward function next to the total
            (("reward",), "rewards/{}/mean", "reward mean"),
            (("reward_std",), "rewards/{}/std", "reward std"),
            (("completions/mean_length",), None, "completion length"),
            (("kl",), None, "KL"),
            (("clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean"), None, "clip ratio"),
        ),
        functions_field="rewards",
    ),
)


def method(name: str) -> TrainingMethod:
    """The method whose subcommand is ``name``."""
    for entry in METHODS:
        if entry.name == name:
            return entry
    names = [m.name for m in METHODS]
    raise SwiftUsageError(f"unknown training method '{name}'{did_you_mean(name, names)}; one of {', '.join(names)}")


def public_functions() -> dict[str, str]:
    """``km.<name>`` -> ``"module:function"`` for every method and alias (kernel_magics' lazy names)."""
    names = {entry.name: entry.api for entry in METHODS}
    names.update({alias: target for entry in METHODS for alias, _, target in entry.aliases})
    return names


def method_of(config: RunConfig) -> TrainingMethod:
    """The method of a run, from its ``config.json`` (``command``; runs written before it: ``kind``); a run
    on a vision-language model (``vision`` recorded) gets the entry's ``on_images``."""
    if config.command:
        entry = method(str(config.command))
        return entry.on_images if entry.on_images is not None and config.vision is not None else entry
    kind = str(config.kind or "sft")
    for entry in METHODS:
        if kind in entry.kinds:
            return entry
    return method(kind)


def trainer_of(config: RunConfig) -> str:
    """The ``module:function`` that builds a run's trainer: its method's, from the code's registry (the run's
    folder names only the method, which must be registered; the trainer it recorded is not used)."""
    return method_of(config).trainer


def panels(config: RunConfig) -> tuple[tuple[str, ...], ...]:
    """The dashboard's third row for a run: one tuple of metric keys per chart (empty: no third row)."""
    try:
        entry = method_of(config)
    except SwiftUsageError:
        return ()
    return tuple(entry.panels.get(config.kind, ()))


def metrics(config: RunConfig) -> tuple[tuple[str, str], ...]:
    """The ``(metric key, label)`` pairs the terminal view prints after the loss for a run."""
    try:
        return method_of(config).metrics
    except SwiftUsageError:
        return ()


# -- subcommands ----------------------------------------------------------------------------------------
_DASHBOARD = "kernel_magics.widgets.dashboard:show"
_WATCH = "kernel_magics.train.api:watch"


def method_commands(entry: TrainingMethod) -> list[Command]:
    """The subcommand of a training method and its aliases (an alias names the variant its own way)."""
    args = args_from(load(entry.arguments))
    shown = {"notebook": _DASHBOARD, "terminal": _WATCH, "notebook_functions": entry.notebook_functions}
    commands = [Command(entry.name, entry.help, entry.api, args, **shown)]
    for alias, variant_name, target in entry.aliases:
        renamed = tuple(
            Arg(variant_name, a.type, a.default, f"{a.help}; the {a.name} by ms-swift's name", a.choices)
            if a.name == entry.variant
            else a
            for a in args
        )
        help_text = f"ms-swift spelling of {entry.name}: {alias} --{variant_name} {'|'.join(entry.kinds)}"
        commands.append(Command(alias, help_text, target, renamed, **shown))
    return commands


def command_of(name: str) -> Command:
    """The subcommand of the training method ``name`` (what ``export-script`` writes)."""
    return method_commands(method(name))[0]
