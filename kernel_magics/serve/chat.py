"""The kernel side of chatting: which server and models to talk to, and streaming a reply from them.

Works against any OpenAI-compatible URL (ours, a vLLM or llama.cpp server, a hosted API): the chat panel
(``kernel_magics/widgets/chat.py``) only renders what :func:`stream_reply` yields.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import SwiftServeError, SwiftUsageError, did_you_mean


@dataclass
class ChatTarget:
    """An OpenAI-compatible endpoint and the model(s) a chat panel talks to."""

    url: str
    models: list[str]  # the model(s) answering each prompt: one, or several side by side
    available: list[str] = field(default_factory=list)
    api_key: str | None = None
    system: str | None = None
    temperature: float = 0.7
    max_tokens: int = 256

    @property
    def compare(self) -> bool:
        return len(self.models) > 1

    def to_text(self) -> str:
        return (
            f"chat with {', '.join(self.models)} at {self.url} (the chat panel needs a notebook; "
            "from a terminal use any OpenAI client against this URL)"
        )


def list_models(url: str, api_key: str | None = None, timeout: float = 10.0) -> list[str]:
    """Model ids from ``GET {url}/models``."""
    request = urllib.request.Request(url.rstrip("/") + "/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        hint = "; pass --api-key" if exc.code == 401 else ""
        raise SwiftServeError(f"{url}/models answered HTTP {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SwiftServeError(f"no OpenAI-compatible server answers at {url} ({reason}); check --url") from None
    return [str(item.get("id")) for item in data.get("data", []) if isinstance(item, dict)]


def resolve_target(
    url: str | None,
    model: str | None,
    compare: list[str] | str | None,
    api_key: str | None,
    system: str | None,
    temperature: float,
    max_tokens: int,
    server: Any = None,
) -> ChatTarget:
    """Check the URL answers and the models exist; ``server`` is the kernel's latest server, if any."""
    if not 0.0 <= float(temperature) <= 2.0:
        raise SwiftUsageError(f"--temperature must be between 0 and 2, got {temperature}")
    if int(max_tokens) < 1:
        raise SwiftUsageError(f"--max-tokens must be at least 1, got {max_tokens}")
    if url is None:
        if server is None:
            raise SwiftServeError(
                "no server is running in this kernel; start one with %swift serve (or km.serve()), "
                "or pass --url of an OpenAI-compatible server"
            )
        url = server.url
        api_key = api_key or server.api_key
    url = url.rstrip("/")
    available = list_models(url, api_key)
    if isinstance(compare, str):
        compare = [c.strip() for c in compare.split(",") if c.strip()]
    wanted = list(compare or []) or [model or (available[0] if available else "")]
    base = available[0] if available else None
    models = []
    for name in wanted:
        if name == "base" and "base" not in available and base:
            name = base
        if available and name not in available:
            raise SwiftUsageError(
                f"model '{name}' is not served at {url} (it has: {', '.join(available)}){did_you_mean(name, available)}"
            )
        models.append(name)
    if compare is not None and len(models) < 2:
        raise SwiftUsageError("--compare needs two or more models, e.g. --compare base,tuned")
    if not models or not models[0]:
        raise SwiftServeError(f"the server at {url} lists no models")
    return ChatTarget(url, models, available, api_key, system, float(temperature), int(max_tokens))


@dataclass
class ReplyStats:
    """Timing of one streamed reply."""

    ttft_s: float | None = None
    seconds: float = 0.0
    completion_tokens: int | None = None
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # [{"name", "arguments"}] as streamed

    @property
    def tokens_per_s(self) -> float | None:
        if not self.completion_tokens or self.seconds <= 0:
            return None
        return self.completion_tokens / self.seconds


def stream_reply(
    target: ChatTarget,
    model: str,
    messages: list[dict[str, str]],
    stats: ReplyStats | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float = 300.0,
    tools: list[dict[str, Any]] | None = None,
) -> Iterator[str]:
    """Yield the pieces of ``model``'s reply to ``messages`` as they arrive (official ``openai`` client).

    With ``tools``, the calls the model makes are gathered in ``stats.tool_calls``.
    """
    import openai

    client = openai.OpenAI(base_url=target.url, api_key=target.api_key or "none", timeout=timeout, max_retries=0)
    started = time.perf_counter()
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            temperature=target.temperature if temperature is None else temperature,
            max_tokens=target.max_tokens if max_tokens is None else max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            **({"tools": tools} if tools else {}),
        )
        for chunk in stream:
            if chunk.usage is not None and stats is not None:
                stats.completion_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if stats is not None and choice.delta and choice.delta.tool_calls:
                    _gather_calls(stats.tool_calls, choice.delta.tool_calls)
                piece = choice.delta.content if choice.delta else None
                if piece:
                    if stats is not None and stats.ttft_s is None:
                        stats.ttft_s = time.perf_counter() - started
                    yield piece
    except openai.APIStatusError as exc:
        raise SwiftServeError(f"{model}: HTTP {exc.status_code}: {_error_message(exc)}") from None
    except openai.APIConnectionError:
        raise SwiftServeError(f"{model}: the server at {target.url} stopped answering") from None
    finally:
        if stats is not None:
            stats.seconds = time.perf_counter() - started


def _gather_calls(calls: list[dict[str, str]], deltas: list[Any]) -> None:
    """Add streamed tool-call deltas (a name once, arguments in pieces) to ``calls``."""
    for delta in deltas:
        index = delta.index if delta.index is not None else len(calls)
        while len(calls) <= index:
            calls.append({"name": "", "arguments": ""})
        function = delta.function
        if function is not None:
            calls[index]["name"] += function.name or ""
            calls[index]["arguments"] += function.arguments or ""


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc).splitlines()[0]
