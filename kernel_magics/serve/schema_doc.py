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


_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}
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


def finish_schema(schema: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """The generated document, told two facts FastAPI cannot know: invalid input is a 400 (FastAPI
    documents a 422 for every route with inputs) and ``model`` names one of the served ``models``."""
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
    return schema
