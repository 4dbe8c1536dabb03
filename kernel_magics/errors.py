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


# difflib ratio of a likely typo: "lroa" ~ "lora" 0.75, "apache2" ~ "apache-2.0" 0.82; one wrong letter of a
# short word ("sfx" ~ "sft", "kot" ~ "kto") 0.67; unrelated words ("not-a-license-xyz" ~
# "microsoft-research-license" 0.56) score lower
CLOSE_ENOUGH = 0.7
CLOSE_ENOUGH_SHORT = 0.6  # words of up to SHORT_WORD characters
SHORT_WORD = 5
SHOWN_CHOICES = 6


def closest(word: str, choices: Iterable[str]) -> str | None:
    """Return the valid choice closest to ``word`` when it looks like a typo of it, else None."""
    choices = list(choices)
    cutoff = CLOSE_ENOUGH_SHORT if len(word) <= SHORT_WORD else CLOSE_ENOUGH
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    if matches:
        return matches[0]
    prefixed = [
        c
        for c in choices
        if (c.startswith(word) or word.startswith(c)) and 2 * min(len(c), len(word)) >= max(len(c), len(word)) >= 3
    ]
    return prefixed[0] if prefixed else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a likely typo, or an empty string."""
    match = closest(word, choices)
    return f" (did you mean '{match}'?)" if match else ""


def shown(value: object, limit: int = 60) -> str:
    """``value`` as a user typed it, cut to ``limit`` characters for a one-line error."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def some_choices(choices: Iterable[str], shown: int = SHOWN_CHOICES, more: str = "see --help") -> str:
    """A few of ``choices`` for a one-line error: ``a, b, c`` or ``a, b, c, ... (28 in all; see --help)``."""
    items = [str(c) for c in choices]
    if len(items) <= shown:
        return ", ".join(items)
    return f"{', '.join(items[:shown])}, ... ({len(items)} in all; {more})"
