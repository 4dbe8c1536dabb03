"""One argument spec per subcommand, shared by the magic, the CLI and the Python API.

A :class:`Command` lists its :class:`Arg` s once; from it we build the argparse parser used by
``%swift`` / ``%%swift`` and ``python -m kernel_magics``, and the names match the keyword arguments of
the Python function it calls (``target``). A ``%%swift`` cell body is YAML whose keys are the same names;
flags on the line win over the body. Unknown names fail with the closest valid one.

Where a function's keywords are an argument dataclass (training methods), :func:`args_from` makes the
``Arg`` rows from its fields, so each knob's name, type, default, help and choices are written once:
``field(default=..., metadata={"help": ..., "choices": ..., "short": ..., "default_help": ...})`` as
TRL's configs and vLLM's engine arguments do. Every other subcommand's rows come from its function's
signature (:func:`kernel_magics.signatures.command_from`).
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import SwiftUsageError, did_you_mean, shown, some_choices

_UNSET = object()


def csv_list(value: Any) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def key_value(value: Any) -> tuple[str, str]:
    """``"name=path"`` -> ``("name", "path")``."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return str(value[0]), str(value[1])
    text = str(value)
    if "=" not in text:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    name, _, rest = text.partition("=")
    return name.strip(), rest.strip()


def number(value: Any) -> float:
    """``"2e-4"`` or ``0.0002`` -> ``0.0002``."""
    return float(str(value).strip())


def optional_int(value: Any) -> int | None:
    """``"3"`` -> ``3``; ``""``, ``"none"`` and ``"null"`` -> None."""
    text = str(value).strip().lower()
    return None if text in ("", "none", "null") else int(text)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


@dataclass(frozen=True)
class Arg:
    """One argument: a keyword of the Python function and a flag (or positional) on the line."""

    name: str
    type: Callable[[Any], Any] = str
    default: Any = None
    help: str = ""
    choices: Sequence[Any] | None = None
    short: str | None = None
    positional: bool = False
    flag: bool = False  # boolean: --name / --no-name
    multiple: bool = False  # repeatable flag collecting a list
    nargs: str | None = None  # for positionals: "*" joins free text such as a search query
    option: str | None = None  # flag spelling when it differs from --name (e.g. --adapter for adapters)
    default_help: str | None = None  # "[default: ...]" text when the default is decided at run time (None)

    @property
    def flag_name(self) -> str:
        return self.option or "--" + self.name.replace("_", "-")

    def convert(self, value: Any) -> Any:
        """Convert a YAML / keyword value with the same rules as the flag."""
        if value is None:
            return None
        if self.multiple:
            items = value if isinstance(value, (list, tuple)) else [value]
            if isinstance(value, dict):
                items = list(value.items())
            return [self._convert_one(v) for v in items]
        return self._convert_one(value)

    def _convert_one(self, value: Any) -> Any:
        kind = boolean if self.flag else self.type
        try:
            converted = kind(value)
        except (TypeError, ValueError) as exc:
            raise SwiftUsageError(f"{self.flag_name}: {shown(exc, 200)}") from None
        if self.choices is not None and converted not in self.choices:
            options = some_choices(map(str, self.choices))
            hint = did_you_mean(str(converted), map(str, self.choices))
            raise SwiftUsageError(f"{self.flag_name}: '{shown(converted)}' is not one of {options}{hint}")
        return converted


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, its arguments and the ``module:function`` it calls."""

    name: str
    help: str
    target: str
    args: Sequence[Arg] = ()  # a tuple, or rows read from the target's signature on first use
    aliases: tuple[str, ...] = ()
    notebook: str | None = None  # "module:function" showing the result in a notebook (widgets)
    terminal: str | None = None  # "module:function" printing the result on a terminal
    defaults: dict[str, Any] = field(default_factory=dict)  # fixed keywords, e.g. an alias's loss type
    notebook_functions: tuple[str, ...] = ()  # arguments whose names may be functions defined in the notebook

    def function(self) -> Callable[..., Any]:
        return load(self.target)

    def parser(self) -> SwiftArgumentParser:
        parser = SwiftArgumentParser(prog=f"%swift {self.name}", description=self.help)
        for arg in self.args:
            kwargs: dict[str, Any] = {"help": _help_text(arg), "default": argparse.SUPPRESS}
            if arg.positional:
                kwargs["nargs"] = arg.nargs or "?"
                kwargs["metavar"] = arg.name.upper()
                parser.add_argument(arg.name, **kwargs)
                continue
            names = [arg.flag_name] + ([arg.short] if arg.short else [])
            if arg.option:
                names.append("--" + arg.name.replace("_", "-"))
            if arg.flag:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = _argparse_type(arg)
                kwargs["metavar"] = _metavar(arg)
                if arg.multiple:
                    kwargs["action"] = "append"
            parser.add_argument(*names, dest=arg.name, **kwargs)
        return parser


@dataclass
class Call:
    """A parsed command line: the command and the keyword arguments for its function."""

    command: Command
    kwargs: dict[str, Any]
    help: str | None = None

    def run(self) -> Any:
        kwargs = {**self.command.defaults, **self.kwargs}
        return self.command.function()(**kwargs)


class SwiftArgumentParser(argparse.ArgumentParser):
    """An argparse parser that raises :class:`SwiftUsageError` instead of exiting the process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SwiftUsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise SwiftUsageError(message or f"{self.prog}: exited with status {status}")


def load(target: str) -> Any:
    """Import ``"package.module:attr"`` lazily."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def make_callable(package: str, target: str) -> None:
    """Make the package ``package`` callable as the function ``target`` ("module:function").

    ``km.serve`` is first the lazily loaded function; importing ``kernel_magics.serve.commands`` (the CLI
    does) binds the attribute to the package of the same name instead. Either way ``km.serve(...)`` runs
    the function, and ``help()`` / completion show its signature.
    """
    import sys

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return load(target)(*args, **kwargs)

        @property
        def __signature__(self) -> Any:
            import inspect

            return inspect.signature(load(target))

    sys.modules[package].__class__ = CallablePackage


def _help_text(arg: Arg) -> str:
    text = arg.help
    if arg.choices:
        text += f" (one of: {', '.join(map(str, arg.choices))})"
    if arg.default not in (None, "", [], ()) and not arg.positional:
        text += f" [default: {_spelled(arg.default)}]"
    elif arg.default is None and arg.default_help:
        text += f" [default: {arg.default_help}]"
    return text.replace("%", "%%")


def _spelled(value: Any) -> str:
    """A default as it is written on the line: a list as ``a,b``."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _metavar(arg: Arg) -> str:
    if arg.type is key_value:
        return "NAME=VALUE"
    return arg.name.upper()


def _argparse_type(arg: Arg) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = arg.type(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    convert.__name__ = getattr(arg.type, "__name__", "value")
    return convert


def parse_args(command: Command, argv: Sequence[str], body: str | None = None) -> Call:
    """Parse a line (``argv`` without the subcommand) and an optional YAML cell body."""
    if any(token in ("-h", "--help") for token in argv):
        return Call(command, {}, help=command.parser().format_help())
    parser = command.parser()
    known, unknown = parser.parse_known_args(list(argv))
    if unknown:
        bad = unknown[0]
        flags = [a.flag_name for a in command.args if not a.positional]
        flags += [a.short for a in command.args if a.short]
        if bad.startswith("-"):
            hint = did_you_mean(bad.split("=")[0], flags)
            raise SwiftUsageError(
                f"%swift {command.name}: unknown flag '{shown(bad)}'{hint}; see %swift {command.name} --help"
            )
        raise SwiftUsageError(f"%swift {command.name}: unexpected argument '{shown(bad)}'")
    line = {k: v for k, v in vars(known).items()}
    by_name = {a.name: a for a in command.args}
    for name, value in list(line.items()):
        arg = by_name[name]
        if arg.positional and arg.nargs == "*":
            line[name] = " ".join(value) if value else None
            if line[name] is None:
                del line[name]
        elif arg.choices is not None and not arg.flag:
            line[name] = arg.convert(value)
    values = {**merge_body(command, body), **line}
    return Call(command, values)


def merge_body(command: Command, body: str | None) -> dict[str, Any]:
    """Read a ``%%swift`` cell body (YAML mapping) into keyword arguments, checking each key."""
    if body is None or not body.strip():
        return {}
    import yaml

    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SwiftUsageError(f"%%swift {command.name}: the cell body is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SwiftUsageError(
            f"%%swift {command.name}: the cell body must be YAML 'key: value' lines, got {type(data).__name__}"
        )
    by_name = {a.name: a for a in command.args}
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).strip().lstrip("-").replace("-", "_")
        arg = by_name.get(key)
        if arg is None:
            hint = did_you_mean(key, by_name)
            raise SwiftUsageError(f"%%swift {command.name}: unknown key '{shown(raw_key)}' in the cell body{hint}")
        values[key] = arg.convert(value)
    return values


# -- Arg rows from an argument dataclass -----------------------------------------------------------------
def knob(default: Any, help: str, **meta: Any) -> Any:  # noqa: A002 - TRL's metadata key
    """A dataclass field with its flag's ``help`` (and ``choices``, ``short``, ``default_help``) in its
    metadata, for :func:`args_from`."""
    return field(default=default, metadata={"help": help, **meta})


def args_from(cls: type, skip: Sequence[str] = ()) -> tuple[Arg, ...]:
    """The ``Arg`` rows of an argument dataclass: one per field, in field order, ``model`` and ``dataset``
    first. A field's ``metadata`` gives ``help``, ``choices``, ``short`` and ``default_help`` (text for a
    default decided at run time; a callable gets the class); ``"cli": False`` keeps it off the line, as
    does naming it in ``skip`` or in the class's ``NOT_ON_LINE``. The type of the flag follows the
    annotation: bool -> ``--x/--no-x``, int, ``int | None`` (accepts "none"), float, ``list[str]`` (a
    comma list), anything else a string."""
    hints = typing.get_type_hints(cls)
    return tuple(_arg_from(cls, f, hints[f.name]) for f in keyword_fields(cls) if f.name not in skip)


def keyword_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are keywords and flags: ``model`` and ``dataset`` first, then field order;
    fields named in ``NOT_ON_LINE`` or marked ``"cli": False`` are not."""
    hidden = set(getattr(cls, "NOT_ON_LINE", ()))
    shown = [f for f in dataclasses.fields(cls) if f.name not in hidden and f.metadata.get("cli", True)]
    first = [f for f in shown if f.name in ("model", "dataset")]
    return [*first, *(f for f in shown if f not in first)]


def _arg_from(cls: type, spec: dataclasses.Field, hint: Any) -> Arg:
    meta = spec.metadata
    default = None if spec.default is dataclasses.MISSING else spec.default
    default_help = meta.get("default_help")
    if callable(default_help):
        default_help = default_help(cls)
    convert, is_flag = flag_type(hint)
    return Arg(
        spec.name,
        type=meta.get("type", convert),
        default=default,
        help=meta.get("help", ""),
        choices=meta.get("choices"),
        short=meta.get("short"),
        flag=is_flag,
        default_help=default_help,
    )


def flag_type(hint: Any) -> tuple[Callable[[Any], Any], bool]:
    """The flag's converter for a field's annotation, and whether it is a boolean flag."""
    options = set(typing.get_args(hint)) if _is_union(hint) else {hint}
    optional = type(None) in options
    options.discard(type(None))
    if any(typing.get_origin(o) in _SEQUENCES for o in options):
        return csv_list, False  # "a,b" on the line, a list from Python
    kind = options.pop() if len(options) == 1 else Any
    if kind is bool:
        return boolean, True
    if kind is int:
        return (optional_int if optional else int), False
    if kind is float:
        return number, False
    if typing.get_origin(kind) in (list, tuple):
        return csv_list, False
    return str, False


_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.Iterable)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
