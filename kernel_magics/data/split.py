"""One held-out split for training and evaluation, decided by each row's content.

``km.sft(eval_split=f, seed=s)`` evaluates on the rows :func:`held_out` picks, and
``km.evaluate(holdout=f, seed=s)`` scores exactly those rows again, so a score called "held out" never
includes a row the model was trained on:

* Rows are compared by content (:func:`content_key`), in the form training sees: a ShareGPT or alpaca row
  and the same chat written as ``messages`` are one row; so are a chat and its prompt/completion split.
* A distinct content is held out when a seeded hash of it falls below ``f``. Whether a row is held out
  depends only on the row and the seed, never on its neighbours: rows a run skipped (too long, bad) or rows
  added to the file later do not move other rows between the sides. So the held-out share is about ``f``
  (at least one row; at least one row stays for training).
* Duplicates go to the same side; the held-out side keeps one copy of each (the first), the training side
  keeps every copy.

A whole number ``f >= 1`` holds out the ``f`` distinct contents with the smallest hashes instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from .formats import RowError, convert_row, detect_format

_HASH_SPACE = float(1 << 64)


def _chat(messages: list[dict[str, Any]]) -> list[list[Any]]:
    """(role, content) pairs up to the last assistant turn (what a prompt/completion split keeps)."""
    pairs = [[m.get("role"), m.get("content")] for m in messages]
    last = max((i for i, (role, _) in enumerate(pairs) if role == "assistant"), default=len(pairs) - 1)
    return pairs[: last + 1]


def canonical_row(row: dict[str, Any]) -> Any:
    """The content of ``row`` as training sees it: source formats converted to TRL form, chats as role/content
    pairs (a ``prompt``+``completion`` message split joined back). Rows no text format reads stay as they are."""
    fmt = detect_format(set(row))
    try:
        converted = convert_row(fmt, row) if fmt is not None else dict(row)
    except RowError:
        converted = dict(row)
    extra = {k: v for k, v in row.items() if k in ("images", "label", "chosen", "rejected") and k not in converted}
    converted = {**converted, **extra}
    prompt, completion = converted.get("prompt"), converted.get("completion")
    if isinstance(converted.get("messages"), list):
        chat = converted.pop("messages")
    elif isinstance(prompt, list) and isinstance(completion, list) and "label" not in converted:
        chat = prompt + completion
        del converted["prompt"], converted["completion"]
    else:
        return converted
    try:
        return {**converted, "chat": _chat(chat)}
    except (AttributeError, TypeError):  # messages that are not dicts: keep them as they are
        return {**converted, "chat": chat}


def content_key(row: dict[str, Any]) -> str:
    """A digest of :func:`canonical_row`: equal for rows with the same content in any supported format."""
    text = json.dumps(canonical_row(row), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _draw(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by the content key and the seed."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE


def held_out_keys(keys: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The distinct keys held out for ``fraction`` (see the module docstring); empty when ``fraction`` <= 0
    or fewer than two distinct keys."""
    distinct = list(dict.fromkeys(keys))
    if fraction <= 0 or len(distinct) < 2:
        return set()
    ranked = sorted(distinct, key=lambda key: (_draw(key, seed), key))
    if fraction >= 1:
        count = int(fraction)
    else:
        count = sum(1 for key in ranked if _draw(key, seed) < fraction)
    count = min(max(count, 1), len(distinct) - 1)
    return set(ranked[:count])


def split_indices(rows: Sequence[dict[str, Any]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, held-out indices) of ``rows``: every copy of a training content, the first copy
    of a held-out one; both in row order."""
    keys = [content_key(row) for row in rows]
    held = held_out_keys(keys, fraction, seed)
    train: list[int] = []
    evaluation: list[int] = []
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key not in held:
            train.append(index)
        elif key not in seen:
            seen.add(key)
            evaluation.append(index)
    return train, evaluation


def held_out(rows: Sequence[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The held-out rows of ``rows`` (what an ``eval_split`` of ``fraction`` evaluates on)."""
    return [rows[i] for i in split_indices(rows, fraction, seed)[1]]


__all__ = ["canonical_row", "content_key", "held_out", "held_out_keys", "split_indices"]
