"""A knob is written once: subcommand flags from a function's signature, public functions from a dataclass.

* :func:`command_from` makes a :class:`~kernel_magics.argspec.Command` whose flags are the keywords of its
  target function: name, type (from the annotation) and default come from the signature; the hand-written
  :func:`about` rows say only what a signature cannot (help, choices, a short flag, a positional, a
  converter such as "3B" -> 3.0, a default decided at run time).
* :func:`from_arguments` makes a public function (``km.sft``) whose keywords are the fields of an argument
  dataclass: signature, defaults, annotations and the keyword list of its docstring are generated from the
  fields, so ``help(km.sft)`` and completion show every knob with its default and help.

Light module: a target's module is imported only when its flags are first needed (a parse, ``--help``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .argspec import Arg, Command, flag_type, keyword_fields, load


def about(help: str = "", **meta: Any) -> dict[str, Any]:  # noqa: A002 - the flag's help, as in knob()
    """What a signature cannot say about one flag: ``help`` and any :class:`Arg` field but name and default."""
    return {"help": help, **meta}


def command_from(name: str, help: str, target: str, flags: Mapping[str, Mapping[str, Any]], **command: Any) -> Command:  # noqa: A002
    """The subcommand ``name`` calling ``target`` ("module:function"), one flag per keyword of the function.

    ``flags`` gives each keyword's :func:`about` row; a row for a name that is not a keyword is a programming
    error caught when the commands are built."""
    return Command(name, help, target, SignatureArgs(target, flags), **command)


class SignatureArgs(Sequence[Arg]):
    """A command's :class:`Arg` rows, read from its target's signature on first use: building the table of
    subcommands imports no target module (``search.commands`` stays free of numpy)."""

    def __init__(self, target: str, flags: Mapping[str, Mapping[str, Any]]) -> None:
        self.target = target
        self.flags = flags
        self._rows: tuple[Arg, ...] | None = None

    def rows(self) -> tuple[Arg, ...]:
        if self._rows is None:
            self._rows = args_of(load(self.target), self.flags)
        return self._rows

    def __getitem__(self, index: Any) -> Any:
        return self.rows()[index]

    def __len__(self) -> int:
        return len(self.rows())

    def __repr__(self) -> str:
        return f"SignatureArgs({self.target!r})"


def args_of(function: Callable[..., Any], flags: Mapping[str, Mapping[str, Any]]) -> tuple[Arg, ...]:
    """The :class:`Arg` rows of ``function``'s keywords, in signature order."""
    params = {
        n: p for n, p in inspect.signature(function).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    stray = sorted(set(flags) - set(params))
    if stray:
        raise TypeError(f"{function.__qualname__} has no keyword {', '.join(stray)}: remove its flag row")
    hints = _hints(function)
    rows = []
    for name, param in params.items():
        meta = dict(flags.get(name, {}))  # a keyword without a row is still a flag (tests ask for its help)
        convert, is_flag = flag_type(hints.get(name, Any))
        meta.setdefault("type", convert)
        meta.setdefault("flag", is_flag and not meta.get("positional"))
        default = None if param.default is inspect.Parameter.empty else param.default
        rows.append(Arg(name, default=default, **meta))
    return tuple(rows)


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except (NameError, TypeError):  # an annotation naming a type imported only for type checkers
        return {}


# -- public functions from an argument dataclass ----------------------------------------------------------
POSITIONAL_FIELDS = ("model", "dataset")  # km.sft("tiny", "rows.jsonl", lr=...): every other knob by name
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def from_arguments(
    cls: type, rename: Mapping[str, str] | None = None, positional: Sequence[str] = POSITIONAL_FIELDS
) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: ``body(arguments, *, own keywords)`` becomes a function whose keywords are ``cls``'s fields
    (``rename``: a field's keyword under another name) followed by ``body``'s own keyword-only ones; only
    the ``positional`` fields (``model`` and ``dataset``) may also be given by position, and come first.

    A call binds its keywords to the generated signature (an unknown one is a ``TypeError``, as for any
    function), fills ``cls`` from them field by field and hands the instance to ``body``."""
    rename = dict(rename or {})

    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        shown = keyword_fields(cls)
        fields = [*(f for name in positional for f in shown if f.name == name), *(f for f in shown if f.name not in positional)]
        hints = typing.get_type_hints(cls)
        body_hints = _hints(body)
        own = list(inspect.signature(body).parameters.values())[1:]
        params = [
            inspect.Parameter(rename.get(f.name, f.name), _POSITIONAL if f.name in positional else _KEYWORD,
                              default=_default(f), annotation=hints[f.name])
            for f in fields
        ] + [
            p.replace(kind=_KEYWORD, annotation=body_hints.get(p.name, p.annotation))
            for p in own
        ]  # fmt: skip
        returns = body_hints.get("return", inspect.signature(body).return_annotation)
        signature = inspect.Signature(params, return_annotation=returns)

        @functools.wraps(body)
        def public(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            arguments = cls(**{f.name: given[rename.get(f.name, f.name)] for f in fields})
            return body(arguments, **{p.name: given[p.name] for p in own})

        public.__signature__ = signature  # type: ignore[attr-defined]
        public.__doc__ = _docstring(body.__doc__ or "", cls, fields, rename)
        del public.__wrapped__  # help() and completion read the generated signature, not body's
        return public

    return decorate


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return inspect.Parameter.empty


def _docstring(doc: str, cls: type, fields: Sequence[dataclasses.Field], rename: Mapping[str, str]) -> str:
    """``doc`` followed by one line per keyword: name, default and the field's help."""
    lines = [inspect.cleandoc(doc), "", f"Keywords (the fields of ``{cls.__name__}``):", ""]
    for spec in fields:
        default = _default(spec)
        if default is None and spec.metadata.get("default_help"):
            shown = spec.metadata["default_help"]
            shown = shown(cls) if callable(shown) else shown
        else:
            shown = repr(default)
        choices = spec.metadata.get("choices")
        extra = f" (one of: {', '.join(map(str, choices))})" if choices else ""
        lines.append(f"* ``{rename.get(spec.name, spec.name)}`` = {shown}: {spec.metadata.get('help', '')}{extra}")
    return "\n".join(lines)
