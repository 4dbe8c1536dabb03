"""From "whatever the user passed" to validated TRL rows, before any model weights are loaded.

``prepare(dataset)`` reads the rows, detects the format, converts and validates every row (stopping at
the first bad one with file / row / field, or skipping bad rows with ``on_bad_rows="skip"``).
``check_lengths(data, tokenizer, max_length)`` then applies the chat template and counts tokens, so rows
longer than ``max_length`` are reported (or skipped) before training starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SwiftDataError
from .formats import KIND_OF, RowError, convert_row, detect_format, expected_columns
from .sources import read_rows

ON_BAD_ROWS = ("error", "skip")


@dataclass
class PreparedData:
    """Validated rows in one TRL dataset type (``kind``: messages, prompt_completion or text)."""

    rows: list[dict[str, Any]]
    labels: list[str]
    format: str
    kind: str
    source: str
    total: int
    skipped: list[str] = field(default_factory=list)  # "where: problem" of each skipped row
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self) -> str:
        """One line: source, format, rows kept / skipped."""
        text = f"{self.source}: {self.total} rows, format '{self.format}'"
        if self.skipped:
            text += f", {len(self.skipped)} skipped (first: {self.skipped[0]})"
        return text + f" -> {len(self.rows)} training rows"

    def to_dataset(self):  # noqa: ANN201 - datasets.Dataset, imported lazily
        """The rows as a ``datasets.Dataset``."""
        from datasets import Dataset

        return Dataset.from_list(self.rows)

    def split(self, fraction: float, seed: int) -> tuple[PreparedData, PreparedData | None]:
        """Split off about ``fraction`` of the distinct rows for evaluation, by content (see
        :mod:`kernel_magics.data.split`: ``km.evaluate(holdout=fraction, seed=seed)`` scores the same rows);
        None when ``fraction`` is 0 or nothing can be held out."""
        from .split import split_indices

        train_idx, eval_idx = split_indices(self.rows, fraction, seed)
        if not eval_idx:
            return self, None

        def pick(idx: list[int]) -> PreparedData:
            return PreparedData(
                [self.rows[i] for i in idx],
                [self.labels[i] for i in idx],
                self.format,
                self.kind,
                self.source,
                len(idx),
            )

        return pick(train_idx), pick(eval_idx)


def prepare(dataset: Any, *, on_bad_rows: str = "error", split: str = "train") -> PreparedData:
    """Read, detect and validate ``dataset``; raise :class:`SwiftDataError` naming the first bad row."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise SwiftDataError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got '{on_bad_rows}'")
    raw = read_rows(dataset, split)
    if not raw.rows:
        raise SwiftDataError(f"dataset {raw.source} is empty: it has no rows to train on")
    columns: set[str] = set()
    for row in raw.rows[:50]:
        columns.update(row)
    fmt = detect_format(columns)
    if fmt is None:
        found = ", ".join(sorted(columns)) or "none"
        raise SwiftDataError(
            f"dataset {raw.source}: cannot tell its format from the columns ({found}); expected {expected_columns()}"
        )
    rows, labels, skipped = convert_rows(raw, fmt, lambda row: convert_row(fmt, row), on_bad_rows)
    return PreparedData(rows, labels, fmt, KIND_OF[fmt], raw.source, len(raw.rows), skipped)


def convert_rows(
    raw: Any, fmt: str, convert: Callable[[dict[str, Any]], dict[str, Any]], on_bad_rows: str
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """``convert`` every row of ``raw``: (rows, their labels, skipped-row notes). A bad row (RowError)
    fails with its label, or is skipped with ``on_bad_rows="skip"``; no good row at all always fails."""
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    skipped: list[str] = []
    for row, label in zip(raw.rows, raw.labels, strict=True):
        try:
            converted = convert(row)
        except RowError as exc:
            if on_bad_rows == "error":
                raise SwiftDataError(f"{label}: {exc} ({fmt} format); fix the row or pass --on-bad-rows skip") from None
            skipped.append(f"{label}: {exc}")
            continue
        rows.append(converted)
        labels.append(label)
    if not rows:
        raise SwiftDataError(f"dataset {raw.source}: all {len(raw.rows)} rows are bad (first: {skipped[0]})")
    return rows, labels, skipped


def token_length(row: dict[str, Any], tokenizer: Any) -> int:
    """Tokens of one TRL row after the chat template (what the trainer will see)."""
    if "messages" in row:
        tools = json.loads(row["tools"]) if row.get("tools") else None
        if tools and "tools" not in (getattr(tokenizer, "chat_template", None) or ""):
            raise ValueError("the row has tools but this model's chat template does not render tools")
        ids = tokenizer.apply_chat_template(row["messages"], tokenize=True, **({"tools": tools} if tools else {}))
    elif "text" in row:
        return len(tokenizer(row["text"])["input_ids"]) + 1  # + eos
    elif isinstance(row["prompt"], list):
        ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
    else:
        return len(tokenizer(row["prompt"] + row["completion"])["input_ids"]) + 1
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def check_lengths(
    data: PreparedData,
    tokenizer: Any,
    max_length: int | None,
    on_bad_rows: str = "error",
    measure: Callable[[dict[str, Any], Any], int] | None = None,
) -> list[int]:
    """Count tokens per row after templating; rows over ``max_length`` fail or are skipped (in place).

    ``measure(row, tokenizer)`` counts one row (default :func:`token_length`; preference rows count their
    longer side). Returns the token count of each kept row.
    """
    measure = measure or token_length
    lengths: list[int] = []
    keep_rows, keep_labels = [], []
    for row, label in zip(data.rows, data.labels, strict=True):
        try:
            n = measure(row, tokenizer)
        except Exception as exc:  # noqa: BLE001 - a template may reject a row (e.g. role order)
            problem = f"the chat template rejects it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            if on_bad_rows == "skip":
                data.skipped.append(f"{label}: {problem}")
                continue
            raise SwiftDataError(f"{label}: {problem}; fix the row or pass --on-bad-rows skip") from None
        if max_length and n > max_length:
            if on_bad_rows == "error":
                raise SwiftDataError(
                    f"{label}: {n} tokens after the chat template, over max_length {max_length}; raise --max-length, "
                    "shorten the row, or pass --on-bad-rows skip"
                )
            data.skipped.append(f"{label}: {n} tokens > max_length {max_length}")
            continue
        lengths.append(n)
        keep_rows.append(row)
        keep_labels.append(label)
    if not keep_rows:
        raise SwiftDataError(f"dataset {data.source}: no row fits max_length {max_length}; raise --max-length")
    data.rows, data.labels = keep_rows, keep_labels
    return lengths


__all__ = ["ON_BAD_ROWS", "PreparedData", "check_lengths", "convert_rows", "prepare", "token_length"]
