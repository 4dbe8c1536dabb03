"""The command line: ``python -m kernel_magics SUBCOMMAND ...`` and the parser behind ``%swift``.

Usage::

    python -m kernel_magics env
    python -m kernel_magics search "small chinese chat model" -k 5
    python -m kernel_magics sft --model tiny --dataset train.jsonl --lr 2e-4

Each capability lists its subcommands in a light ``commands`` module (no heavy imports); this module
collects them into one table so the magic, the CLI and ``--help`` agree.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from .argspec import Call, Command, load, parse_args
from .errors import SwiftError, SwiftUsageError, did_you_mean

COMMAND_MODULES = (
    "kernel_magics.envinfo",
    "kernel_magics.hub",
    "kernel_magics.search.commands",
    "kernel_magics.train.commands",
    "kernel_magics.serve.commands",
    "kernel_magics.export.commands",
    "kernel_magics.classroom.commands",
)


def commands() -> dict[str, Command]:
    """All subcommands by name and alias, in the order they are listed in ``--help``."""
    table: dict[str, Command] = {}
    for module_name in COMMAND_MODULES:
        for command in importlib.import_module(module_name).COMMANDS:
            table[command.name] = command
            for alias in command.aliases:
                table.setdefault(alias, command)
    return table


def command(name: str) -> Command:
    """The subcommand called ``name`` (or an alias of it)."""
    table = commands()
    if name not in table:
        raise SwiftUsageError(f"unknown subcommand '{name}'{did_you_mean(name, table)}; see %swift --help")
    return table[name]


def overview(prog: str = "%swift") -> str:
    """The top-level help: one line per subcommand."""
    seen: list[Command] = []
    for cmd in commands().values():
        if cmd not in seen:
            seen.append(cmd)
    width = max(len(c.name) for c in seen)
    lines = [
        f"usage: {prog} SUBCOMMAND [flags]      (%%swift SUBCOMMAND [flags] takes a YAML body of the same keys)",
        "",
        "subcommands:",
    ]
    for cmd in seen:
        alias = f"  (alias: {', '.join(cmd.aliases)})" if cmd.aliases else ""
        lines.append(f"  {cmd.name.ljust(width)}  {cmd.help}{alias}")
    lines += ["", f"{prog} SUBCOMMAND --help shows the flags of one subcommand."]
    return "\n".join(lines)


def parse(argv: Sequence[str] | str, body: str | None = None, prog: str = "%swift") -> Call:
    """Parse a full command line (``"sft --lr 2e-4"`` or its tokens) plus an optional YAML body."""
    if isinstance(argv, str):
        try:
            argv = shlex.split(argv)
        except ValueError as exc:
            raise SwiftUsageError(f"{prog}: cannot split the line ({exc}); check the quotes") from None
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        return Call(Command("help", "", "kernel_magics.cli:overview"), {}, help=overview(prog))
    if argv[0].startswith("-"):
        raise SwiftUsageError(f"{prog}: expected a subcommand before '{argv[0]}'; see {prog} --help")
    return parse_args(command(argv[0]), argv[1:], body)


def render_terminal(call: Call, result: Any) -> None:
    """Print a command's result on a terminal."""
    if call.command.terminal:
        load(call.command.terminal)(result)
        return
    if result is None:
        return
    if hasattr(result, "to_text"):
        print(result.to_text())
    elif hasattr(result, "to_string"):
        print(result.to_string())
    else:
        print(result)


def _join_background_threads(timeout: float = 60.0) -> None:
    """Let job threads finish their last clean-up before the interpreter exits (torch aborts otherwise)."""
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name.startswith("km-") and thread.is_alive():
            thread.join(timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m kernel_magics`` and the ``kernel-magics`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .train.runtime.warm import KEEP_WARM

    KEEP_WARM["after_runs"] = False  # one command, at most one run: no worker kept waiting for a next one
    try:
        call = parse(argv, prog="python -m kernel_magics")
        if call.help is not None:
            print(call.help)
            return 0
        render_terminal(call, call.run())
        _join_background_threads()
        return 0
    except SwiftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
