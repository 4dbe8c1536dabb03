"""What ``/openapi.json`` says the server answers: every route's replies, errors included.

The shapes here document the replies (the routes build plain dicts, as fast as before); the server
is fuzzed against this document (``tests/test_serve_schemathesis.py``), so a reply that strays from it
is a failing test.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Open):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorReply(_Open):
    """Every error: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    parent: str | None = None


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelCard]


class ToolCall(_Open):
    id: str
    type: Literal["function"]
    function: dict[str, Any]


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(_Open):
    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None
    finish_reason: Literal["stop", "length", "tool_calls"]


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(_Open):
    index: int
    text: str
    logprobs: dict[str, Any] | None
    finish_reason: Literal["stop", "length"]


class Completion(_Open):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


# each server-sent event: ``data:`` a chunk as JSON, an error object, or ``[DONE]``
_EVENT = {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}
_STREAM = {"text/event-stream": {"schema": _EVENT}}
_ERRORS = {
    status: {"model": ErrorReply, "description": why}
    for status, why in (
        (400, "the request is invalid (the field is named in error.param)"),
        (401, "missing or wrong API key"),
        (403, "a Host this server does not answer"),
        (404, "no such model or route"),
        (413, "the request body is too large"),
        (503, "the server is busy or stopping (Retry-After)"),
        (504, "the request ran past request_timeout_s"),
    )
}
_GENERATION_ERRORS = {**_ERRORS, 500: {"model": ErrorReply, "description": "the engine failed on this request"}}


def chat_responses() -> dict[int | str, dict[str, Any]]:
    return {200: {"model": ChatCompletion, "content": _STREAM}, **_GENERATION_ERRORS}


def completion_responses() -> dict[int | str, dict[str, Any]]:
    return {200: {"model": Completion, "content": _STREAM}, **_GENERATION_ERRORS}


def plain_responses(model: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
    documented: dict[int | str, dict[str, Any]] = dict(_ERRORS)
    if model is not None:
        documented[200] = {"model": model}
    return documented


def finish_schema(schema: dict[str, Any], models: list[str], vocab_size: int | None = None) -> dict[str, Any]:
    """The generated document, told what FastAPI cannot know: invalid input is a 400 (FastAPI documents
    a 422 for every route with inputs), ``model`` names one of the served ``models``, a prompt is not
    empty and its token ids lie in the vocabulary."""
    for route in schema.get("paths", {}).values():
        for operation in route.values():
            operation.get("responses", {}).pop("422", None)
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "model":
                    parameter["schema"] = {"type": "string", "enum": list(models)}
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        if name in components:
            components[name]["properties"]["model"] = {"type": "string", "enum": list(models), "title": "Model"}
            components[name]["properties"]["seed"] = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}
    prompt = components.get("CompletionRequest", {}).get("properties", {}).get("prompt", {})
    for variant in prompt.get("anyOf", []):
        _not_empty(variant, vocab_size)
    return schema


def _not_empty(schema: dict[str, Any], vocab_size: int | None) -> None:
    """Strings and lists in ``schema`` (a prompt) non-empty; integers (token ids) in the vocabulary."""
    if schema.get("type") == "string":
        schema["minLength"] = 1
    elif schema.get("type") == "integer":
        schema["minimum"] = 0
        if vocab_size:
            schema["maximum"] = vocab_size - 1
    elif schema.get("type") == "array":
        schema["minItems"] = 1
        _not_empty(schema.get("items", {}), vocab_size)
