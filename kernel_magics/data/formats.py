"""Detecting a dataset's format and converting each row into one of TRL's dataset types, with checks.

Source formats (detected from the columns, reported to the user):

* ``messages``: OpenAI-style ``[{"role": ..., "content": ...}, ...]``; assistant messages may carry
  ``tool_calls`` and ``tool`` messages their results, with the functions in a ``tools`` column
* ``sharegpt``: ``conversations`` of ``{"from": "human"|"gpt"|..., "value": ...}`` (``function_call`` turns
  hold ``{"name", "arguments"}`` JSON, ``observation`` turns the results; functions in ``tools``)
* ``alpaca``: ``instruction`` / ``input`` / ``output`` with optional ``system`` and ``history``
* ``prompt_completion``: ``prompt`` / ``completion`` (strings or message lists)
* ``text``: plain ``text`` (language modeling on every token)

Conversations become ``{"messages": [...]}`` rows, the rest keep TRL's ``prompt``/``completion`` or
``text`` columns. Every problem names the row and field: ``train.jsonl line 7: messages[2].role 'bot'
is not a known role (did you mean ...)``.
"""

from __future__ import annotations

import json
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


def check_messages(messages: Any, field: str = "messages") -> list[dict[str, Any]]:
    """Validate an OpenAI-style message list and return it as plain role/content dicts.

    An assistant message may call tools instead of (or besides) answering: its ``tool_calls`` come back
    as ``[{"type": "function", "function": {"name", "arguments"}}]`` with the arguments as JSON text.
    """
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
        calls = message.get("tool_calls")
        if role == "assistant" and calls:
            content = _text(message.get("content") or "", f"{where}.content", allow_empty=True)
            out.append({"role": role, "content": content, "tool_calls": check_tool_calls(calls, f"{where}.tool_calls")})
            continue
        content = _text(message.get("content"), f"{where}.content")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise RowError(field, "has no assistant message to learn from")
    return out


def check_tool_calls(calls: Any, field: str) -> list[dict[str, Any]]:
    """``[{"type": "function", "function": {"name": str, "arguments": JSON text of an object}}]``."""
    if hasattr(calls, "tolist"):
        calls = calls.tolist()
    if not isinstance(calls, list):
        raise RowError(field, f"must be a list of tool calls, got {type(calls).__name__}")
    out = []
    for i, call in enumerate(calls):
        where = f"{field}[{i}]"
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise RowError(where, 'must be {"type": "function", "function": {"name": ..., "arguments": {...}}}')
        name = _text(function.get("name"), f"{where}.function.name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                raise RowError(f"{where}.function.arguments", f"is not valid JSON: {arguments[:60]!r}") from None
        if not isinstance(arguments, dict):
            raise RowError(f"{where}.function.arguments", f"must be a JSON object, got {type(arguments).__name__}")
        # JSON text, as OpenAI sends it: one column type for every row (Arrow would merge objects' keys)
        out.append(
            {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}
        )
    if not out:
        raise RowError(field, "is an empty list")
    return out


def check_tools(tools: Any, field: str = "tools") -> str | None:
    """Validate a ``tools`` column (a list of function specs or its JSON text); return it as JSON text."""
    if tools is None or (isinstance(tools, str) and not tools.strip()):
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            raise RowError(field, f"is not valid JSON: {tools[:60]!r}") from None
    if hasattr(tools, "tolist"):
        tools = tools.tolist()
    if not isinstance(tools, list):
        raise RowError(field, f"must be a list of function specs, got {type(tools).__name__}")
    specs = []
    for i, tool in enumerate(tools):
        spec = tool if isinstance(tool, dict) and "function" in tool else {"type": "function", "function": tool}
        function = spec["function"]
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise RowError(
                f"{field}[{i}]", 'must be {"type": "function", "function": {"name": ..., "parameters": {...}}}'
            )
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise RowError(f"{field}[{i}].function.parameters", "must be a JSON schema object")
        specs.append(spec)
    return json.dumps(specs, ensure_ascii=False) if specs else None


def _with_tools(row: dict[str, Any], converted: dict[str, Any]) -> dict[str, Any]:
    """Add the row's ``tools`` (JSON text, as TRL reads it) when it has any."""
    tools = check_tools(row.get("tools"))
    calls = any(m.get("tool_calls") for m in converted["messages"])
    if calls and tools is None:
        raise RowError("tools", "is missing: the assistant calls tools, so the row must list them")
    return dict(converted, tools=tools) if tools else converted


def _sharegpt_turn(speaker: str, value: Any, where: str) -> dict[str, Any]:
    """One ShareGPT turn as a message (``function_call``: an assistant tool call; ``observation``: a result)."""
    role = SHAREGPT_ROLES[speaker]
    if speaker != "function_call":
        return {"role": role, "content": value}
    try:
        call = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise RowError(
            f"{where}.value", f'must be {{"name": ..., "arguments": {{...}}}} JSON, got {str(value)[:60]!r}'
        ) from None
    calls = call if isinstance(call, list) else [call]
    return {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": c} for c in calls]}


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
        if str(speaker).lower() not in SHAREGPT_ROLES:
            raise RowError(
                f"{where}.from", f"'{speaker}' is not a known speaker{did_you_mean(str(speaker), SHAREGPT_ROLES)}"
            )
        messages.append(_sharegpt_turn(str(speaker).lower(), turn.get("value", turn.get("content")), where))
    if isinstance(row.get("system"), str) and row["system"].strip() and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": row["system"]})
    return _with_tools(row, {"messages": check_messages(messages, "conversations")})


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
    return _with_tools(row, {"messages": check_messages(row.get("messages"))})


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
