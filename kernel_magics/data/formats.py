"""Detecting a dataset's format and converting each row into one of TRL's dataset types, with checks.

Source formats (detected from the columns, reported to the user):

* ``messages``: OpenAI-style ``[{"role": ..., "content": ...}, ...]``
* ``sharegpt``: ``conversations`` of ``{"from": "human"|"gpt"|..., "value": ...}``
* ``alpaca``: ``instruction`` / ``input`` / ``output`` with optional ``system`` and ``history``
* ``prompt_completion``: ``prompt`` / ``completion`` (strings or message lists)
* ``text``: plain ``text`` (language modeling on every token)

Conversations become ``{"messages": [...]}`` rows, the rest keep TRL's ``prompt``/``completion`` or
``text`` columns. Every problem names the row and field: ``train.jsonl line 7: messages[2].role 'bot'
is not a known role (did you mean ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import did_you_mean

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
    "tool": "tool",
    "observation": "tool",
    "function_call": "assistant",
}
FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "text")
KIND_OF = {
    "messages": "messages",
    "sharegpt": "messages",
    "alpaca": "messages",
    "prompt_completion": "prompt_completion",
    "text": "text",
}


class RowError(ValueError):
    """A problem with one row: ``field`` names where, the message says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


def detect_format(columns: set[str]) -> str | None:
    """The source format implied by a row's (or the dataset's) columns, or None."""
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if "instruction" in columns and "output" in columns:
        return "alpaca"
    if "prompt" in columns and "completion" in columns:
        return "prompt_completion"
    if "text" in columns:
        return "text"
    return None


def expected_columns() -> str:
    return (
        "'messages' (role/content list), 'conversations' (ShareGPT from/value), 'instruction'+'output' (alpaca), "
        "'prompt'+'completion' or 'text'"
    )


def _text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if value is None:
        raise RowError(field, "is missing")
    if not isinstance(value, str):
        raise RowError(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowError(field, "is empty")
    return value


def check_messages(messages: Any, field: str = "messages") -> list[dict[str, str]]:
    """Validate an OpenAI-style message list and return it as plain role/content dicts."""
    if messages is None:
        raise RowError(field, "is missing")
    if hasattr(messages, "tolist"):  # numpy arrays from parquet
        messages = messages.tolist()
    if not isinstance(messages, list):
        raise RowError(field, f"must be a list of messages, got {type(messages).__name__}")
    if not messages:
        raise RowError(field, "is an empty list")
    out: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise RowError(where, f"must be a dict with role and content, got {type(message).__name__}")
        if "role" not in message or message["role"] is None:
            raise RowError(f"{where}.role", "is missing; every message needs a role and a content")
        role = message["role"]
        if not isinstance(role, str):
            raise RowError(f"{where}.role", f"must be a string, got {type(role).__name__}")
        if role not in ROLES:
            raise RowError(f"{where}.role", f"'{role}' is not one of {', '.join(ROLES)}{did_you_mean(role, ROLES)}")
        content = _text(message.get("content"), f"{where}.content")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise RowError(field, "has no assistant message to learn from")
    return out


def _sharegpt(row: dict[str, Any]) -> dict[str, Any]:
    turns = row.get("conversations")
    if hasattr(turns, "tolist"):
        turns = turns.tolist()
    if not isinstance(turns, list) or not turns:
        raise RowError("conversations", "must be a non-empty list of {from, value} turns")
    messages = []
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RowError(where, f"must be a dict with from and value, got {type(turn).__name__}")
        speaker = turn.get("from", turn.get("role"))
        if speaker is None:
            raise RowError(f"{where}.from", "is missing")
        role = SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise RowError(
                f"{where}.from", f"'{speaker}' is not a known speaker{did_you_mean(str(speaker), SHAREGPT_ROLES)}"
            )
        messages.append({"role": role, "content": turn.get("value", turn.get("content"))})
    if isinstance(row.get("system"), str) and row["system"].strip() and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": row["system"]})
    return {"messages": check_messages(messages, "conversations")}


def _alpaca(row: dict[str, Any]) -> dict[str, Any]:
    instruction = _text(row.get("instruction"), "instruction")
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RowError("input", f"must be a string, got {type(extra).__name__}")
    output = _text(row.get("output"), "output")
    messages: list[dict[str, Any]] = []
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise RowError("system", f"must be a string, got {type(system).__name__}")
    if system and system.strip():
        messages.append({"role": "system", "content": system})
    history = row.get("history") or []
    if hasattr(history, "tolist"):
        history = history.tolist()
    if not isinstance(history, list):
        raise RowError("history", f"must be a list of [question, answer] pairs, got {type(history).__name__}")
    for i, pair in enumerate(history):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RowError(f"history[{i}]", "must be a [question, answer] pair")
        messages.append({"role": "user", "content": _text(pair[0], f"history[{i}][0]")})
        messages.append({"role": "assistant", "content": _text(pair[1], f"history[{i}][1]")})
    prompt = instruction + ("\n\n" + extra if extra and extra.strip() else "")
    messages.append({"role": "user", "content": prompt})
    messages.append({"role": "assistant", "content": output})
    return {"messages": messages}


def _prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list) or hasattr(prompt, "tolist"):
        prompt_msgs = _message_list(prompt, "prompt", need_assistant=False)
        completion_msgs = _message_list(completion, "completion", need_assistant=True)
        return {"prompt": prompt_msgs, "completion": completion_msgs}
    return {"prompt": _text(prompt, "prompt", allow_empty=True), "completion": _text(completion, "completion")}


def _message_list(value: Any, field: str, *, need_assistant: bool) -> list[dict[str, str]]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if need_assistant:
        return check_messages(value, field)
    if not isinstance(value, list) or not value:
        raise RowError(field, "must be a non-empty list of messages")
    checked = check_messages([*value, {"role": "assistant", "content": "x"}], field)
    return checked[:-1]


def _messages(row: dict[str, Any]) -> dict[str, Any]:
    return {"messages": check_messages(row.get("messages"))}


def _plain_text(row: dict[str, Any]) -> dict[str, Any]:
    return {"text": _text(row.get("text"), "text")}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "messages": _messages,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
    "text": _plain_text,
}


def convert_row(fmt: str, row: dict[str, Any]) -> dict[str, Any]:
    """Validate one row of source format ``fmt`` and return it in TRL form (raises :class:`RowError`)."""
    return CONVERTERS[fmt](row)
