"""One spec per knob: every subcommand's flags are its function's keywords with the function's defaults, no
help text writes a default by hand, and the public training functions are generated from their argument
dataclasses (signature, defaults, docstring) and hand the filled dataclass to the one launcher."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.argspec import keyword_fields
from kernel_magics.signatures import about, command_from
from kernel_magics.train.methods.registry import METHODS


def _subcommands():
    seen = []
    for command in cli.commands().values():
        if command not in seen:
            seen.append(command)
    return seen


def _function_default(param: inspect.Parameter):
    return None if param.default is inspect.Parameter.empty else param.default


def test_every_flag_default_is_its_functions_default():
    compared = 0
    for command in _subcommands():
        params = inspect.signature(command.function()).parameters
        for arg in command.args:
            assert arg.name in params, f"{command.name}: --{arg.name} is not a keyword of {command.target}"
            expected = _function_default(params[arg.name])
            assert arg.default == expected, f"{command.name} --{arg.name}: flag {arg.default!r}, function {expected!r}"
            compared += 1
        for key in command.defaults:
            assert key in params, f"{command.name}: fixed keyword {key} is not a keyword of {command.target}"
    assert len(_subcommands()) == 22 and compared > 250  # every subcommand, every flag


def test_no_help_text_writes_a_default_and_every_flag_says_what_it_is():
    for command in _subcommands():
        for arg in command.args:
            assert arg.help.strip(), f"{command.name} --{arg.name} has no help"
            assert "default" not in arg.help.lower(), f"{command.name} --{arg.name}: a default written in its help"
    flat = " ".join(cli.command("search").parser().format_help().split())
    assert "how many results [default: 10]" in flat and "pull per task [default: 50]" in flat
    flat = " ".join(cli.command("eval").parser().format_help().split())
    assert "[default: perplexity]" in flat  # a tuple default spelled as the line takes it


def test_a_flag_row_for_no_keyword_is_refused_and_a_changed_default_follows_the_function():
    def demo(model: str | None = None, steps: int = 7, names: list[str] | None = None, fast: bool = False) -> None:
        """demo"""

    import sys

    sys.modules[__name__].demo = demo
    command = command_from("demo", "demo", f"{__name__}:demo", {"model": about("the model", positional=True)})
    rows = {a.name: a for a in command.args}
    assert rows["steps"].default == 7 and rows["steps"].type is int
    assert rows["names"].convert("a,b") == ["a", "b"] and rows["fast"].flag
    assert rows["model"].positional and not rows["model"].flag
    typo = command_from("demo", "demo", f"{__name__}:demo", {"stepz": about("typo")})
    with pytest.raises(TypeError, match="has no keyword stepz"):
        typo.parser()  # rows are read from the signature on first use


@pytest.mark.parametrize("entry", METHODS, ids=lambda m: m.name)
def test_public_function_is_generated_from_its_dataclass(entry):
    cls = entry.argument_class()
    function = getattr(km, entry.name)
    params = inspect.signature(function).parameters
    fields = keyword_fields(cls)
    assert list(params)[: len(fields)] == [f.name for f in fields]
    assert params["verbose"].kind is inspect.Parameter.KEYWORD_ONLY and params["verbose"].default is True
    for spec in fields:
        assert params[spec.name].default == spec.default or spec.default is dataclasses.MISSING
        assert f"``{spec.name}``" in function.__doc__ and spec.metadata["help"] in function.__doc__
    assert "verbose" not in {f.name for f in dataclasses.fields(cls)}
    with pytest.raises(TypeError, match="lora_rr"):
        function(lora_rr=3)
    with pytest.raises(TypeError, match="positional"):
        function("tiny", "rows.jsonl", "lora")  # a third value by position would land on a knob by accident


def test_keywords_reach_the_launcher_as_the_dataclass(monkeypatch):
    import kernel_magics.train.api as api
    from kernel_magics.train.methods.dpo import PreferenceArguments
    from kernel_magics.train.methods.vlm import VisionArguments

    seen = []
    monkeypatch.setattr(api, "launch", lambda entry, arguments, verbose: seen.append((entry.name, arguments, verbose)))
    km.sft("tiny", "rows.jsonl", lora_r=4, verbose=False)
    km.rlhf("kto", beta=0.2)  # ms-swift's order: the loss first
    name, args, verbose = seen[0]
    assert name == "sft" and type(args) is VisionArguments and verbose is False
    assert (args.model, args.dataset, args.lora_r, args.lr) == ("tiny", "rows.jsonl", 4, VisionArguments.lr)
    name, args, verbose = seen[1]
    assert name == "dpo" and type(args) is PreferenceArguments and (args.loss, args.beta, verbose) == ("kto", 0.2, True)


def test_the_magic_turns_notebook_function_names_into_the_functions(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    import kernel_magics.train.api as api

    seen = []
    monkeypatch.setattr(api, "launch", lambda entry, arguments, verbose: seen.append(arguments))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "kernel_magics")
    try:

        def digits(completions, **columns):
            return [0.0 for _ in completions]

        shell.user_ns["digits"] = digits
        shell.run_line_magic("swift", "grpo --model tiny --dataset rows.jsonl --reward digits,format")
    finally:
        shell.run_line_magic("unload_ext", "kernel_magics")
    assert seen[0].reward == [digits, "format"]  # the notebook's function; a built-in's name passes through
    assert cli.command("grpo").notebook_functions == ("reward",) and cli.command("sft").notebook_functions == ()
