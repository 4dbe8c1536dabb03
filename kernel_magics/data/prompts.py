"""Prompt-only data for online RL (GRPO): the model writes the completions, reward functions score them.

Source formats (detected from the columns):

* ``prompt``: ``prompt`` as a string or a message list ending with a user turn (an optional ``system``
  string is put in front)
* ``messages``: a conversation; a final assistant turn is dropped (it is what the model will write)

Every other column is kept as it is and reaches the reward functions as a keyword argument of the same
name (e.g. ``answer`` for the built-in answer rewards). Problems name the row and the field, e.g.
``prompts.jsonl line 4: prompt[1].role: the prompt must end with a user turn, not 'assistant'``.
"""

from __future__ import annotations

from typing import Any

from ..errors import SwiftDataError
from .formats import RowError, check_messages
from .prepare import ON_BAD_ROWS, PreparedData, convert_rows
from .sources import read_rows

PROMPT_FORMATS = ("prompt", "messages")
# names the trainer passes to reward functions itself: a dataset column of that name would collide
RESERVED_COLUMNS = (
    "completion",
    "completions",
    "prompts",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
)


def detect_prompt_format(columns: set[str]) -> str | None:
    """The prompt format implied by ``columns``, or None."""
    if "prompt" in columns:
        return "prompt"
    if "messages" in columns:
        return "messages"
    return None


def _as_list(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _user_turns(messages: Any, field: str) -> list[dict[str, str]]:
    """A checked message list that ends with a user turn (a trailing assistant turn is an error here)."""
    checked = check_messages([*messages, {"role": "assistant", "content": "x"}], field)[:-1]
    if checked[-1]["role"] == "assistant":
        raise RowError(f"{field}[{len(checked) - 1}].role", "the prompt must end with a user turn, not 'assistant'")
    if all(m["role"] == "system" for m in checked):
        raise RowError(field, "has only system messages; add the user turn the model should answer")
    return checked


def _with_system(prompt: Any, system: Any) -> Any:
    if system is None or (isinstance(system, str) and not system.strip()):
        return prompt
    if not isinstance(system, str):
        raise RowError("system", f"must be a string, got {type(system).__name__}")
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system}, *messages]


def _prompt(row: dict[str, Any]) -> Any:
    value = _as_list(row.get("prompt"))
    if value is None:
        raise RowError("prompt", "is missing")
    if isinstance(value, list):
        if not value:
            raise RowError("prompt", "is an empty list")
        return _with_system(_user_turns(value, "prompt"), row.get("system"))
    if not isinstance(value, str):
        raise RowError("prompt", f"must be a string or a message list, got {type(value).__name__}")
    if not value.strip():
        raise RowError("prompt", "is empty")
    return _with_system(value, row.get("system"))


def _messages(row: dict[str, Any]) -> Any:
    value = _as_list(row.get("messages"))
    if value is None:
        raise RowError("messages", "is missing")
    if not isinstance(value, list) or not value:
        raise RowError("messages", "must be a non-empty list of messages")
    if isinstance(value[-1], dict) and value[-1].get("role") == "assistant":
        value = value[:-1]  # the reply the model will write itself
        if not value:
            raise RowError("messages", "has only an assistant turn; add the user turn the model should answer")
    return _with_system(_user_turns(value, "messages"), row.get("system"))


def convert_prompt_row(fmt: str, row: dict[str, Any]) -> dict[str, Any]:
    """One source row -> ``{"prompt": ..., **extra columns}`` (raises :class:`RowError`)."""
    for name in RESERVED_COLUMNS:
        if name in row:
            raise RowError(name, "is a name the trainer passes to reward functions itself; rename the column")
    prompt = _prompt(row) if fmt == "prompt" else _messages(row)
    extra = {k: _as_list(v) for k, v in row.items() if k not in ("prompt", "messages", "system")}
    return {"prompt": prompt, **extra}


def prepare_prompts(
    dataset: Any, *, on_bad_rows: str = "error", required: tuple[str, ...] = (), split: str = "train"
) -> PreparedData:
    """Read and validate prompt rows; ``required``: extra columns every row must have (e.g. ``answer``)."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise SwiftDataError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got '{on_bad_rows}'")
    raw = read_rows(dataset, split)
    if not raw.rows:
        raise SwiftDataError(f"dataset {raw.source} is empty: it has no prompts")
    columns: set[str] = set()
    for row in raw.rows[:50]:
        columns.update(row)
    fmt = detect_prompt_format(columns)
    if fmt is None:
        found = ", ".join(sorted(columns)) or "none"
        raise SwiftDataError(
            f"dataset {raw.source}: no prompts found (columns: {found}); GRPO needs a 'prompt' column (text or "
            "messages) or 'messages' conversations, plus any columns your reward functions read"
        )

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        out = convert_prompt_row(fmt, row)
        for name in required:
            if out.get(name) is None:
                raise RowError(name, "is missing; the chosen reward compares completions with this column")
        return out

    rows, labels, skipped = convert_rows(raw, fmt, convert, on_bad_rows)
    return PreparedData(rows, labels, fmt, "prompt", raw.source, len(raw.rows), skipped)


def to_conversational_prompts(data: PreparedData) -> int:
    """String prompts become one user message (in place), so the chat template formats them as in SFT."""
    changed = 0
    for row in data.rows:
        if isinstance(row["prompt"], str):
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
            changed += 1
    return changed


def prompt_length(row: dict[str, Any], tokenizer: Any) -> int:
    """Tokens of the prompt after the chat template (with the assistant header the model continues from)."""
    if isinstance(row["prompt"], list):
        ids = tokenizer.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)
    return len(tokenizer(row["prompt"])["input_ids"])


__all__ = [
    "PROMPT_FORMATS",
    "RESERVED_COLUMNS",
    "detect_prompt_format",
    "prepare_prompts",
    "prompt_length",
    "to_conversational_prompts",
]
