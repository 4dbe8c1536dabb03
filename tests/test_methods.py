"""The training-method registry: each knob is written once (its argument dataclass), and the flags, the
public functions' keywords, the help text and what runs record all follow from it."""

from __future__ import annotations

import dataclasses
import inspect
from typing import ClassVar

import pytest

from kernel_magics import argspec, cli
from kernel_magics.argspec import args_from, load
from kernel_magics.errors import SwiftDataError, SwiftUsageError
from kernel_magics.signatures import from_arguments
from kernel_magics.train.methods.registry import (
    METHODS,
    TrainingMethod,
    method,
    method_commands,
    method_of,
    metrics,
    panels,
    public_functions,
)
from kernel_magics.train.methods.sft import SFTArguments
from kernel_magics.train.runtime.launching import rows_in_memory
from kernel_magics.train.runtime.start import RunRecord, launch, rows_summary


def _on_line(cls: type) -> dict[str, dataclasses.Field]:
    hidden = set(getattr(cls, "NOT_ON_LINE", ()))
    return {f.name: f for f in dataclasses.fields(cls) if f.name not in hidden and f.metadata.get("cli", True)}


@pytest.mark.parametrize("entry", METHODS, ids=lambda m: m.name)
def test_public_function_keywords_are_the_dataclass_fields_with_its_defaults(entry):
    cls = entry.argument_class()
    params = inspect.signature(load(entry.api)).parameters
    keywords = {name: p for name, p in params.items() if name != "verbose"}
    fields = _on_line(cls)
    assert set(keywords) == set(fields), set(keywords) ^ set(fields)
    for name, spec in fields.items():
        assert keywords[name].default == spec.default, f"{entry.api}: {name} defaults differ from {cls.__name__}"
    assert [a.name for a in cli.command(entry.name).args] == [a.name for a in args_from(cls)]
    assert {a.name for a in cli.command(entry.name).args} == set(fields)


@pytest.mark.parametrize("entry", METHODS, ids=lambda m: m.name)
def test_registry_entries_name_what_exists(entry):
    assert dataclasses.is_dataclass(entry.argument_class())
    for target in (entry.api, entry.trainer, entry.prepare):
        assert callable(load(target)), target
    params = list(inspect.signature(load(entry.prepare)).parameters)
    assert params[:2] == ["args", "model_path"] and "trust_remote_code" in params
    assert public_functions()[entry.name] == entry.api
    for kind in entry.panels:
        assert kind in entry.kinds


def test_help_defaults_come_from_the_dataclasses():
    from kernel_magics.train.methods.dpo import DEFAULT_BETA, LOSSES, PreferenceArguments
    from kernel_magics.train.methods.sft import SFTArguments

    for entry in METHODS:
        for spec in dataclasses.fields(entry.argument_class()):
            assert "[default" not in spec.metadata.get("help", ""), f"{spec.name}: a default written in prose"
    sft_help = cli.command("sft").parser().format_help().replace("\n", " ")
    dpo_help = cli.command("dpo").parser().format_help().replace("\n", " ")
    for help_text, cls in ((sft_help, SFTArguments), (dpo_help, PreferenceArguments)):
        flat = " ".join(help_text.split())
        assert f"{cls.LEARNING_RATES['lora']:g} for LoRA/QLoRA, {cls.LEARNING_RATES['full']:g} for full" in flat
        assert f"LoRA rank [default: {cls.lora_r}]" in flat
    flat = " ".join(dpo_help.split())
    assert f"{DEFAULT_BETA['dpo']:g} for dpo/orpo/kto" in flat and f"{DEFAULT_BETA['simpo']:g} for simpo" in flat
    assert method("dpo").kinds == LOSSES
    assert "--packing" not in dpo_help and "--assistant-only-loss" not in dpo_help


def test_rlhf_is_dpo_with_the_loss_named_type():
    dpo_args = [a.name for a in cli.command("dpo").args]
    rlhf_args = [a.name for a in cli.command("rlhf").args]
    assert rlhf_args == ["type" if name == "loss" else name for name in dpo_args]
    assert cli.parse("rlhf --type kto").kwargs == {"type": "kto"}


def test_a_run_finds_its_method_old_and_new_configs():
    from kernel_magics.train.runtime.run_config import RunConfig

    def config(**recorded):  # as config.json holds it
        return RunConfig.from_dict(recorded)

    assert method_of(config(command="dpo", kind="orpo")).name == "dpo"
    assert method_of(config(kind="simpo")).name == "dpo"  # written before config.json had "command"
    assert method_of(config(kind="sft")).name == "sft"
    assert panels(config(command="dpo", kind="kto"))[-1] == ("kl",)
    assert panels(config(command="sft", kind="sft")) == ()
    assert ("rewards/margins", "margin") in metrics(config(kind="dpo")) and metrics(config(kind="sft")) == ()
    with pytest.raises(SwiftUsageError, match="did you mean 'sft'"):
        method_of(config(command="sfft"))


def test_typed_flags_follow_the_annotations():
    call = cli.parse("sft --max-steps none --lr 3e-4 --target-modules q_proj,v_proj --no-packing --max-pixels 1000")
    assert call.kwargs == {
        "max_steps": None,
        "lr": 3e-4,
        "target_modules": ["q_proj", "v_proj"],
        "packing": False,
        "max_pixels": 1000,
    }
    with pytest.raises(SwiftUsageError, match="did you mean 'grounding'"):
        cli.parse("sft --template groundin")


# -- a method defined in this file alone: continued pre-training (plain text, loss on every token) ------
@dataclasses.dataclass
class PretrainArguments(SFTArguments):
    """Continued pre-training: ``text`` rows; the chat knobs do not apply."""

    NOT_ON_LINE: ClassVar[tuple[str, ...]] = ("assistant_only_loss", "packing", "token_metrics")


def pretrain_rows(args: PretrainArguments, model_path, *, trust_remote_code: bool = False):
    from kernel_magics.data.prepare import prepare

    data = prepare(args.dataset, on_bad_rows=args.on_bad_rows)
    if data.kind != "text":
        raise SwiftDataError(f"pretrain takes 'text' rows, got {data.kind} rows")
    return data


def pretrain_record(args: PretrainArguments, data, plan) -> RunRecord:
    lines = [plan.describe(), f"pretrain: {len(data)} text rows, loss on every token"]
    return RunRecord(data=rows_summary(data), lines=lines, rows=rows_in_memory(args.dataset))


PRETRAIN = TrainingMethod(
    name="pretrain",
    help="continued pre-training on plain text",
    arguments=f"{__name__}:PretrainArguments",
    api=f"{__name__}:pretrain",
    trainer="kernel_magics.train.methods.sft:build_trainer",  # SFT's trainer on text rows is the plain LM loss
    prepare=f"{__name__}:pretrain_rows",
    record=f"{__name__}:pretrain_record",
)


@from_arguments(PretrainArguments)
def pretrain(arguments: PretrainArguments, *, verbose: bool = True):
    """Continue pre-training on plain text."""
    return launch(PRETRAIN, arguments, verbose=verbose)


def test_a_method_in_one_file_gets_flags_a_function_and_trains_through_the_launcher(tiny_model, workspace, monkeypatch):
    from kernel_magics.train.methods import registry as methods

    monkeypatch.setattr(methods, "METHODS", (*methods.METHODS, PRETRAIN))  # its one registry line
    command = method_commands(PRETRAIN)[0]
    assert "--packing" not in command.parser().format_help() and "--lora-r" in command.parser().format_help()
    assert inspect.signature(pretrain).parameters["lora_r"].default == SFTArguments.lora_r
    rows = [{"text": f"the {n}th pretraining sentence says {n * 7} plus one is {n * 7 + 1}."} for n in range(16)]
    with pytest.raises(SwiftDataError, match="pretrain takes 'text' rows"):
        pretrain(str(tiny_model), [{"prompt": "a", "completion": "b"}] * 4, verbose=False)
    knobs = f"--model {tiny_model} --max-steps 12 --lr 5e-3 --batch-size 4 --lora-r 8 --logging-steps 1 --dtype fp32"
    knobs += " --where kernel"  # the registry line is patched into this process only; a worker imports methods.py
    call = argspec.parse_args(command, knobs.split())
    run = pretrain(**call.kwargs, dataset=rows, verbose=False)
    assert run.wait(300) == "finished", run.error
    losses = run.metrics["loss"].dropna().tolist()
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses  # it learns the text
    assert run.config.command == "pretrain" and run.config.trainer == PRETRAIN.trainer
    assert any("16 text rows, loss on every token" in line for line in run.notes)
    assert (run.output_dir / "dataset.jsonl").read_text().count("\n") == 16
    from kernel_magics.widgets.dashboard import Dashboard

    dash = Dashboard(run, interval=0.2)  # a dashboard with no edit for the method: loss row, no third row
    assert dash.series("loss")[0] == list(range(1, 13)) and "finished" in dash.status.value
    shell = run.to_script(kind="shell").read_text()  # export-script writes the method's own subcommand
    assert "kernel_magics pretrain" in shell and "--lora-r 8" in shell, shell
    assert "km.pretrain(" in run.to_script(kind="python").read_text()
