"""Project exception types.

Every user-facing failure is a :class:`SwiftError` carrying one human line: what was wrong, where
(file / row / field / flag) and what to do. The notebook shows that line in red without a traceback
(unless ``%config SwiftMagics.verbose_errors = True``); the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SwiftError(Exception):
    """Base class for errors the user can fix; ``str(err)`` is the one line shown to them."""


class SwiftUsageError(SwiftError):
    """A bad subcommand, flag, option value or YAML key."""


class SwiftConfigError(SwiftError):
    """A bad setting or argument value (e.g. ``lr <= 0``)."""


class SwiftDataError(SwiftError):
    """A dataset that cannot be read or has bad rows."""


class SwiftModelError(SwiftError):
    """A model that cannot be found, loaded or downloaded."""


class SwiftDeviceError(SwiftError):
    """A device or method the current machine does not support (e.g. 4-bit on MPS)."""


class SwiftServeError(SwiftError):
    """A server that cannot be started, reached or used."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """Return the valid choice closest to ``word`` (or None when nothing is close)."""
    choices = list(choices)
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if matches:
        return matches[0]
    prefixed = [c for c in choices if c.startswith(word) or word.startswith(c)]
    return prefixed[0] if prefixed else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    match = closest(word, choices)
    return f" (did you mean '{match}'?)" if match else ""


def not_implemented(command: str = "this subcommand", **_: object) -> None:
    """Target of subcommands whose feature has not landed yet."""
    raise SwiftError(f"%swift {command} is not implemented yet")
