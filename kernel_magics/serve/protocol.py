"""OpenAI-compatible request and response shapes (the subset real clients send and expect).

Requests are pydantic models that accept and ignore fields we do not act on (clients such as the
official ``openai`` package or LangChain send many), but reject values that make no sense
(``max_tokens <= 0``, ``n < 1``, ``temperature`` outside [0, 2]) with an :class:`APIError` that the app
turns into ``{"error": {"message", "type", "param", "code"}}`` and a 4xx status.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class APIError(Exception):
    """An OpenAI-style error: HTTP ``status`` and the fields of the ``error`` object."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        type: str = "invalid_request_error",  # noqa: A002 - the OpenAI field name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.headers = headers or {}
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message content as plain text (text parts joined; other parts rejected)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text":
                raise APIError(f"content parts of type '{part.type}' are not supported by this model", param="messages")
            texts.append(part.text or "")
        return "".join(texts)

    def parts(self) -> str | list[dict[str, Any]]:
        """The content for engines that take images: text parts and ``{"type": "image_url", "url": ...}``."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        out: list[dict[str, Any]] = []
        for part in self.content:
            if part.type == "text":
                out.append({"type": "text", "text": part.text or ""})
            elif part.type == "image_url":
                ref = (part.model_extra or {}).get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str) or not url.strip():
                    raise APIError(
                        "image_url parts need an object like {'url': 'data:image/png;base64,...'}", param="messages"
                    )
                out.append({"type": "image_url", "url": url})
            else:
                raise APIError(f"content parts of type '{part.type}' are not supported by this model", param="messages")
        return out


MAX_CHOICES = 16  # n
MAX_TOP_LOGPROBS = 20  # top_logprobs (chat) and logprobs (completions), as in OpenAI


class ResponseFormat(BaseModel):
    """``{"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}``."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    def schema(self) -> dict[str, Any] | None:
        """The JSON schema the reply must follow (``{"type": "object"}`` for json_object; None for text)."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "object"}
        spec = self.json_schema or {}
        schema = spec.get("schema", spec.get("schema_"))
        if not isinstance(schema, dict):
            raise APIError("response_format.json_schema needs a 'schema' object", param="response_format")
        return schema


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(BaseModel):
    """One entry of ``tools``: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"] = "function"
    function: FunctionSpec


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by chat and text completions."""

    # extra fields are read (a field the engine does not honour gets a 400 naming it); the schema
    # documents only the fields a request may carry
    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    model: str
    max_tokens: int | None = Field(default=None, json_schema_extra={"minimum": 1})
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(default=None, json_schema_extra={"maxItems": 4})
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None

    @field_validator("max_tokens")
    @classmethod
    def _positive_max_tokens(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("max_tokens must be at least 1")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        items = [value] if isinstance(value, str) else list(value)
        if len(items) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return [s for s in items if s]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, json_schema_extra={"minimum": 1})
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("max_completion_tokens")
    @classmethod
    def _positive_max_completion_tokens(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("max_completion_tokens must be at least 1")
        return value

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]  # text or token ids, one prompt or several
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)

    @field_validator("prompt")
    @classmethod
    def _some_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or any(isinstance(p, list) and not p for p in value)):
            raise ValueError("send at least one prompt")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def texts(self) -> list[str | list[int]]:
        """Every prompt of the request, text or token ids (a list of prompts gets ``n`` choices each, in order)."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]  # type: ignore[list-item]
        return list(self.prompt)

    def limit(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else 16  # the OpenAI default for completions


# -- what each engine honours --------------------------------------------------------------------------
# Each in-process engine's registry entry names the request fields it acts on, per endpoint
# (ServingEngine.honoured_fields). A request that gives any other field a value gets a 400 naming that
# field: a field silently ignored would make the caller believe it got what it asked for. The vLLM
# launcher (engines/vllm_main.py) answers the fields of vLLM's own request models the same way.
SAMPLING_FIELDS = frozenset(
    {"model", "max_tokens", "temperature", "top_p", "stop", "seed", "n", "stream", "stream_options", "user"}
)


def unhonoured_field(body: BaseModel, honoured: set[str]) -> str | None:
    """The first field of ``body`` that was given a value and is not in ``honoured`` (None when all are)."""
    fields = type(body).model_fields
    given = list(body.model_fields_set) + list(body.model_extra or {})
    for name in sorted(set(given)):
        if name in honoured:
            continue
        value = getattr(body, name, None) if name in fields else (body.model_extra or {}).get(name)
        default = fields[name].default if name in fields else None
        if value is not None and value != default:
            return name
    return None


def check_fields(body: BaseModel, honoured: set[str]) -> None:
    """Raise a 400 naming the first field of ``body`` outside ``honoured`` (the engine's, for one endpoint)."""
    name = unhonoured_field(body, honoured)
    if name is not None:
        raise APIError(
            f"{name} is not supported by this server's engine; leave it out (supported: {', '.join(sorted(honoured))})",
            param=name,
            code="unsupported_parameter",
        )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def model_list(names: list[str], owner: str = "kernel_magics", parents: dict[str, str] | None = None) -> dict[str, Any]:
    parents = parents or {}
    created = now()
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": owner, "parent": parents.get(name)}
            for name in names
        ],
    }
