"""Reward functions for GRPO: resolving what the user named, the built-ins, a checking wrapper, saved sources.

A reward is any callable with TRL's signature: ``fn(prompts, completions, **columns) -> list[float]`` (one
number per completion; ``None`` means "not applicable"). For conversational prompts each completion is a
list with one assistant message: :func:`completion_text` gives its text either way. ``reward=`` takes

* a callable, or a list of callables / names
* a built-in name: ``format`` (the completion matches ``format_pattern``), ``exact`` (the answer equals the
  row's ``answer`` column), ``numeric`` (the last number of the answer equals ``answer``), ``length`` (a
  penalty from 0 down to -1 for completions longer than ``length_target`` tokens)
* ``"module:function"`` or ``"path/to/file.py:function"`` (the CLI and YAML spelling)

Each resolved reward is called through :class:`~.reward_calls.CheckedReward` (a time limit, stoppable): one
that raises, hangs, returns the wrong number of values or a non-number fails the run with one line naming
the function and the sample. The source of the
user's functions is saved with the run (``rewards.py``), so a run can resume and ``export-script`` can
reproduce it; where there is no source, one line says so. Text constants whose names look like secrets
(``*TOKEN*``, ``*KEY*``, ``*SECRET*``, ``*PASSWORD*``) are saved as ``os.environ[...]`` reads, never as values.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import SwiftConfigError, SwiftError, did_you_mean

BUILTINS = ("format", "exact", "numeric", "length")
NEEDS_ANSWER = ("exact", "numeric")
DEFAULT_FORMAT = r"<think>.*?</think>\s*<answer>.*?</answer>"
SOURCE_FILE = "rewards.py"
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD", re.IGNORECASE)  # such values never reach rewards.py


class SwiftRewardError(SwiftError):
    """A reward function that failed or returned something the trainer cannot use."""


@dataclass
class Reward:
    """A resolved reward: its display name, the callable, and how to find it again (``spec``)."""

    name: str
    func: Callable[..., Any]
    spec: str  # built-in name, "module:function", or "rewards.py:function" (saved with the run)
    source: str | None = None  # the function's source when it came from the user's code


# -- text helpers ------------------------------------------------------------------------------------
def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the content of TRL's ``[{"role": "assistant", ...}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in completion)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


def answer_part(text: str) -> str:
    """What is inside ``<answer>...</answer>`` when present, else the whole text, stripped."""
    match = _ANSWER_TAG.search(text)
    return (match.group(1) if match else text).strip()


# -- built-ins -----------------------------------------------------------------------------------------
def format_reward(pattern: str = DEFAULT_FORMAT) -> Callable[..., list[float]]:
    compiled = re.compile(pattern, re.DOTALL)

    def format(completions: list[Any], **_: Any) -> list[float]:  # noqa: A001 - the reward's shown name
        return [1.0 if compiled.fullmatch(completion_text(c).strip()) else 0.0 for c in completions]

    return format


def exact(completions: list[Any], answer: list[Any], **_: Any) -> list[float]:
    """1.0 when the answer (inside <answer> tags, or the whole completion) equals the row's ``answer``."""
    return [
        1.0 if answer_part(completion_text(c)) == str(a).strip() else 0.0
        for c, a in zip(completions, answer, strict=False)
    ]


def _number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", ".")) if found else None


def numeric(completions: list[Any], answer: list[Any], **_: Any) -> list[float]:
    """1.0 when the last number of the answer equals the row's numeric ``answer`` (to 1e-6)."""
    out = []
    for c, a in zip(completions, answer, strict=False):
        got, want = _number(answer_part(completion_text(c))), _number(str(a))
        out.append(1.0 if got is not None and want is not None and abs(got - want) <= 1e-6 else 0.0)
    return out


def length_reward(target: int, longest: int) -> Callable[..., list[float]]:
    span = max(1, longest - target)

    def length(completions: list[Any], completion_ids: list[list[int]] | None = None, **_: Any) -> list[float]:
        sizes = (
            [len(ids) for ids in completion_ids] if completion_ids else [len(completion_text(c)) for c in completions]
        )
        return [-min(1.0, max(0, n - target) / span) for n in sizes]

    return length


def builtin(name: str, format_pattern: str, length_target: int | None, max_completion_length: int) -> Callable:
    if name == "format":
        return format_reward(format_pattern)
    if name == "exact":
        return exact
    if name == "numeric":
        return numeric
    target = length_target if length_target is not None else max_completion_length // 2
    return length_reward(target, max_completion_length)


# -- resolving -------------------------------------------------------------------------------------------
def reward_name(func: Any) -> str:
    while hasattr(func, "func") and not hasattr(func, "__name__"):  # functools.partial
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def _load_file(path: Path, module_name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SwiftConfigError(f"--reward: cannot load {path} as Python; pass module:function or file.py:function")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_reward(spec: str, base: Path | None = None) -> Callable[..., Any]:
    """``"module:function"`` or ``"file.py:function"`` (relative files: against ``base``, else the cwd)."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise SwiftConfigError(
            f"--reward '{spec}' is not a built-in ({', '.join(BUILTINS)}) nor module:function"
            f"{did_you_mean(spec, BUILTINS)}"
        )
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_absolute() and base is not None and (base / path).is_file():
                path = base / path
            if not path.is_file():
                raise SwiftConfigError(f"--reward {spec}: file {path} does not exist")
            module = _load_file(path, f"km_rewards_{abs(hash(str(path.resolve())))}")
        else:
            module = importlib.import_module(where)
    except SwiftError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module may fail in any way
        raise SwiftConfigError(f"--reward {spec}: cannot import {where} ({type(exc).__name__}: {exc})") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise SwiftConfigError(f"--reward {spec}: {where} has no function '{attr}'")
    return func


def check_signature(func: Any, name: str) -> None:
    """Fail early when ``func`` cannot take TRL's keyword arguments (``completions`` or ``**kwargs``)."""
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__):
        raise SwiftConfigError(f"reward {name} is async; pass a plain function (def, not async def)")
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = {p.name for p in params}
    if "completions" not in names:
        raise SwiftConfigError(
            f"reward {name} must take the keyword argument 'completions' (and **kwargs for the other columns), "
            f"e.g. def {name}(completions, **kwargs)"
        )


def resolve_rewards(
    reward: Any,
    *,
    format_pattern: str = DEFAULT_FORMAT,
    length_target: int | None = None,
    max_completion_length: int = 256,
    base: Path | None = None,
    namespace: dict[str, Any] | None = None,
) -> list[Reward]:
    """``reward`` (callable | name | spec | list of them) -> checked :class:`Reward` s with unique names.

    ``namespace``: where bare names that are not built-ins are looked up (the notebook's user namespace).
    """
    items = list(reward) if isinstance(reward, (list, tuple)) else [reward]
    if not items or any(item is None for item in items):
        raise SwiftConfigError(
            f"no reward given; pass reward=a function, a list of them, or a built-in: {', '.join(BUILTINS)}"
        )
    out: list[Reward] = []
    for item in items:
        if isinstance(item, str) and "," in item and ":" not in item:
            out += resolve_rewards(
                item.split(","),
                format_pattern=format_pattern,
                length_target=length_target,
                max_completion_length=max_completion_length,
                base=base,
                namespace=namespace,
            )
            continue
        out.append(_resolve_one(item, format_pattern, length_target, max_completion_length, base, namespace))
    seen: dict[str, int] = {}
    for entry in out:  # two rewards with one name would share a metric column
        seen[entry.name] = seen.get(entry.name, 0) + 1
        if seen[entry.name] > 1:
            entry.name = f"{entry.name}_{seen[entry.name]}"
    return out


def _resolve_one(
    item: Any, pattern: str, length_target: int | None, longest: int, base: Path | None, namespace: dict | None
) -> Reward:
    if isinstance(item, str):
        text = item.strip()
        if text in BUILTINS:
            return Reward(text, builtin(text, pattern, length_target, longest), text)
        if ":" in text:
            func = import_reward(text, base)
            check_signature(func, reward_name(func))
            return Reward(reward_name(func), func, text)
        if namespace is not None and callable(namespace.get(text)):
            item = namespace[text]
        else:
            raise SwiftConfigError(
                f"reward '{text}' is not a built-in ({', '.join(BUILTINS)}){did_you_mean(text, BUILTINS)}, "
                "a function defined in this notebook, nor module:function"
            )
    if not callable(item):
        raise SwiftConfigError(
            f"reward must be a function, a built-in name or module:function, got {type(item).__name__}"
        )
    name = reward_name(item)
    check_signature(item, name)
    return Reward(name, item, f"{SOURCE_FILE}:{name}", function_source(item))


# -- sources saved with the run ------------------------------------------------------------------------------
def function_source(func: Any) -> str | None:
    """The dedented source of a plain function (None for lambdas, partials, objects or code without source)."""
    if not inspect.isfunction(func) or func.__name__ == "<lambda>":
        return None
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None


def _constant(name: str, value: Any, imports: list[str], secrets: list[str]) -> str:
    """``name = value`` for rewards.py; a text value whose name looks like a secret is read from the environment."""
    if isinstance(value, (bool, int, float)) or not _SECRET_NAME.search(name):
        return f"{name} = {value!r}"
    imports.append("import os")
    secrets.append(name)
    return f"{name} = os.environ[{name!r}]  # not saved: the name looks like a secret; set it in the environment"


def _globals_used(func: Any, secrets: list[str]) -> tuple[list[str], list[str]]:
    """(import lines, assignments/definitions) for the modules, constants and helper functions ``func`` uses;
    the names of values left out as secrets are added to ``secrets``."""
    imports: list[str] = []
    defs: list[str] = []
    names: set[str] = set()
    stack = [func.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    scope = dict(func.__globals__)
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=False):
        try:
            scope[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        names.add(name)
    for name in sorted(n for n in names if n.isidentifier()):  # pytest's rewritten asserts add "@py_..." names
        value = scope.get(name)
        if isinstance(value, types.ModuleType):
            line = f"import {value.__name__}" + (f" as {name}" if value.__name__ != name else "")
            imports.append(line if "." not in value.__name__ or value.__name__ != name else f"import {value.__name__}")
        elif isinstance(value, (str, bytes, int, float, bool, tuple)) and len(repr(value)) < 2000:
            defs.append(_constant(name, value, imports, secrets))
        elif isinstance(value, re.Pattern):
            imports.append("import re")
            defs.append(f"{name} = re.compile({value.pattern!r}, {int(value.flags)})")
        elif inspect.isfunction(value) and value is not func and function_source(value):
            defs.append(function_source(value).rstrip())
    return sorted(set(imports)), defs


def sources_file(rewards: list[Reward]) -> tuple[str, list[str]]:
    """The text of ``rewards.py`` (the user's reward functions) and one note per reward without source."""
    # annotations stay text (as in a module with this import): a type named in a signature needs no import here
    parts = [
        '"""Reward functions of this run, saved from the code that defined them."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    notes: list[str] = []
    imports: set[str] = set()
    bodies: list[str] = []
    for reward in rewards:
        if reward.spec in BUILTINS or not reward.spec.startswith(SOURCE_FILE + ":"):
            continue
        if reward.source is None:
            notes.append(
                f"reward {reward.name}: no source to save (a lambda, partial, callable object or code typed without "
                "a file); export-script and resume after a restart need it defined in a module"
            )
            bodies.append(f"# {reward.name}: no source available")
            continue
        secrets: list[str] = []
        found_imports, defs = _globals_used(reward.func, secrets)
        imports.update(found_imports)
        if secrets:
            notes.append(
                f"reward {reward.name}: {', '.join(secrets)} not saved in {SOURCE_FILE} (the names look like secrets); "
                "the saved file reads them from environment variables of the same names"
            )
        bodies += [*defs, reward.source.rstrip()]
    return "\n".join([*parts, *sorted(imports), "", *[b + "\n\n" for b in bodies]]).rstrip() + "\n", notes
