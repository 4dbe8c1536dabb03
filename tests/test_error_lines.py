"""Errors stay one short line: suggestions only for likely typos, a few choices, a pointer to --help."""

from __future__ import annotations

import importlib

import pytest

from kernel_magics.argspec import parse_args
from kernel_magics.cli import COMMAND_MODULES
from kernel_magics.errors import SwiftUsageError, did_you_mean, some_choices

LICENSES = [f"license-{i}" for i in range(20)] + ["microsoft-research-license", "apache-2.0", "mit", "cc-by-4.0"]
LIMIT = 300


def _commands():
    for module in COMMAND_MODULES:
        yield from importlib.import_module(module).COMMANDS


def test_suggestions_only_for_close_matches():
    assert did_you_mean("not-a-license-xyz", LICENSES) == ""
    assert did_you_mean("apache2", LICENSES) == " (did you mean 'apache-2.0'?)"
    assert did_you_mean("lroa", ["lora", "qlora", "full"]) == " (did you mean 'lora'?)"
    assert did_you_mean("transformer", ["auto", "transformers", "vllm"]) == " (did you mean 'transformers'?)"
    assert did_you_mean("m", ["mit", "mistral"]) == ""  # one letter is no typo of anything
    assert some_choices(LICENSES) == (
        "license-0, license-1, license-2, license-3, license-4, license-5, ... (24 in all; see --help)"
    )


CASES = [
    (command, arg)
    for command in _commands()
    for arg in command.args
    if arg.choices is not None and not arg.flag and not arg.positional
]


@pytest.mark.parametrize("command, arg", CASES, ids=[f"{c.name}--{a.name}" for c, a in CASES])
def test_every_bad_choice_is_one_short_line(command, arg):
    for value in ("not-a-choice-xyz", "z" * 5000):
        with pytest.raises(SwiftUsageError) as info:
            parse_args(command, [arg.flag_name, value])
        message = str(info.value)
        assert "\n" not in message and len(message) <= LIMIT, message
        assert "did you mean" not in message


@pytest.mark.parametrize("command", list(_commands()), ids=lambda c: c.name)
def test_every_unknown_flag_and_key_is_one_short_line(command):
    for argv in (["--not-a-flag-xyz"], ["--" + "q" * 5000]):
        with pytest.raises(SwiftUsageError) as info:
            parse_args(command, argv)
        message = str(info.value)
        assert "\n" not in message and len(message) <= LIMIT and "--help" in message, message
    with pytest.raises(SwiftUsageError) as info:
        parse_args(command, [], body=("k" * 5000) + ": 1")
    assert len(str(info.value)) <= LIMIT
