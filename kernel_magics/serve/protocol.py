"""OpenAI-compatible request and response shapes (the subset real clients send and expect).

Requests are pydantic models that accept and ignore fields we do not act on (clients such as the
official ``openai`` package or LangChain send many), but reject values that make no sense
(``max_tokens <= 0``, ``n != 1``, ``temperature`` outside [0, 2]) with an :class:`APIError` that the app
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


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("max_tokens")
    @classmethod
    def _positive_max_tokens(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("max_tokens must be at least 1")
        return value

    @field_validator("n")
    @classmethod
    def _single_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported")
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
    max_completion_tokens: int | None = None

    @field_validator("max_completion_tokens")
    @classmethod
    def _positive_max_completion_tokens(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("max_completion_tokens must be at least 1")
        return value

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(SamplingRequest):
    prompt: str | list[str]
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send one prompt per request (a list of exactly one string)")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def limit(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else 16  # the OpenAI default for completions


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


def chat_response(
    rid: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(
    rid: str, model: str, created: int, delta: dict[str, Any] | None, finish: str | None = None
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}


def completion_response(
    rid: str, model: str, text: str, finish: str | None, prompt_tokens: int, completion_tokens: int, created: int = 0
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created or now(),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": usage(prompt_tokens, completion_tokens),
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
