"""Tool calling for the transformers engine: which format the model writes, parsing replies, forced calls.

Two reply formats are understood (the ``--tool-call-parser`` names are vLLM's):

* ``hermes`` — Hermes / Qwen2.5: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks,
  possibly after some text;
* ``llama3_json`` — Llama 3.1+: the whole reply is ``{"name": ..., "parameters": {...}}`` (optionally after
  ``<|python_tag|>``; several calls separated by ``;``).

The parser is chosen from the chat template (``<tool_call>`` -> hermes, ``<|python_tag|>`` or
``"parameters"`` -> llama3_json) unless given. Tools reach the model through its own chat template.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from .protocol import APIError

PARSERS = ("hermes", "llama3_json")
_HERMES_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_HERMES_START = "<tool_call>"
_PYTHON_TAG = "<|python_tag|>"


def parser_for_template(template: str | None, override: str | None = None) -> str | None:
    """The tool-call format of a chat template (None when the template does not render tools)."""
    if override:
        if override not in PARSERS:
            raise ValueError(f"tool call parser '{override}' is not one of {', '.join(PARSERS)}")
        return override
    if not template or "tools" not in template:
        return None
    if _HERMES_START in template:
        return "hermes"
    if _PYTHON_TAG in template or '"parameters"' in template or "parameters" in template:
        return "llama3_json"
    return None


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as chat templates expect them: tool-call ``arguments`` as objects, not JSON text."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            message = dict(message, tool_calls=[_template_call(call) for call in calls])
        out.append(message)
    return out


def chat_prompt_ids(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """Token ids of the conversation (with ``tools`` rendered by the chat template) + the reply prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this model has no chat template; use /v1/completions with a plain prompt")
    extra = {"tools": tools} if tools else {}
    text = tokenizer.apply_chat_template(
        template_messages(messages), add_generation_prompt=True, tokenize=False, **extra
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise APIError(
                f"tool call '{function.get('name')}' has arguments that are not JSON: {arguments[:80]!r}",
                param="messages",
            ) from None
    return {"id": call.get("id"), "type": call.get("type", "function"), "function": function}


def parse_tool_calls(text: str, parser: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Split a finished reply into content and OpenAI ``tool_calls`` (an empty list when none parse)."""
    if parser == "hermes":
        start = text.find(_HERMES_START)
        if start < 0:
            return text, []
        calls = [_call(obj, "arguments") for obj in _json_objects(_HERMES_BLOCK.findall(text[start:]))]
        calls = [c for c in calls if c is not None]
        return (text[:start].strip() or None, calls) if calls else (text, [])
    body = text.strip().removeprefix(_PYTHON_TAG).strip()
    if not body.startswith("{"):
        return text, []
    calls = [_call(obj, "parameters") for obj in _json_objects(body.split(";"))]
    if not calls or any(c is None for c in calls):
        return text, []
    return None, calls  # type: ignore[return-value]


def _json_objects(chunks: list[str]) -> list[dict[str, Any]]:
    """The JSON objects at the start of each chunk (text after one, e.g. a cut-off end tag, is ignored)."""
    objects = []
    decoder = json.JSONDecoder()
    for chunk in chunks:
        try:
            value, _ = decoder.raw_decode(chunk.strip())
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


def _call(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    name = obj.get("name")
    arguments = obj.get(key, obj.get("arguments", {}))
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


def may_start_call(text: str, parser: str) -> int:
    """How many characters at the end of streamed ``text`` must be held back: a call may start there.

    Hermes: from ``<tool_call>`` (or a prefix of it at the very end) on. Llama 3: everything, once the
    reply starts with ``{`` or ``<|python_tag|>`` (or could still).
    """
    if parser == "hermes":
        start = text.find(_HERMES_START)
        if start >= 0:
            return len(text) - start
        for k in range(min(len(_HERMES_START) - 1, len(text)), 0, -1):
            if text.endswith(_HERMES_START[:k]):
                return k
        return 0
    stripped = text.lstrip()
    if not stripped or stripped.startswith("{") or _PYTHON_TAG.startswith(stripped[: len(_PYTHON_TAG)]):
        return len(text)
    return 0


def choice_of_tools(tools: list[dict[str, Any]], tool_choice: Any) -> tuple[list[dict[str, Any]], bool]:
    """The tools the reply may call and whether it must call one (``required`` or a named function)."""
    if tool_choice in (None, "auto"):
        return tools, False
    if tool_choice == "none":
        return [], False
    if tool_choice == "required":
        return tools, True
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            names = ", ".join(t["function"]["name"] for t in tools)
            raise APIError(f"tool_choice names '{name}', which is not among the tools ({names})", param="tool_choice")
        return chosen, True
    raise APIError("tool_choice must be 'none', 'auto', 'required' or {'type': 'function', ...}", param="tool_choice")


def forced_call_grammar(tools: list[dict[str, Any]], parser: str) -> tuple[str, dict[str, Any], str]:
    """Prefix, JSON schema and suffix of a reply that is exactly one call of one of ``tools``."""
    key = "arguments" if parser == "hermes" else "parameters"
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                key: t["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", key],
            "additionalProperties": False,
        }
        for t in tools
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    if parser == "hermes":
        return "<tool_call>\n", schema, "\n</tool_call>"
    return "", schema, ""
