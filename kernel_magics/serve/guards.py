"""What keeps one request from hurting the others: prompts too long for the context refused before they are
tokenised, templating and tokenising off the event loop (a bad input is a 400), engine failures turned into
OpenAI errors for every waiting request, and non-streaming requests cancelled when their client leaves or
they run past the server's timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from .engines.base import Engine, EngineFailure, RequestHandle
from .limits import longest_token_chars, too_long_to_fit
from .protocol import APIError


def chars(content: Any) -> int:
    """Characters of a message's text (a string or content parts)."""
    if isinstance(content, str):
        return len(content)
    return sum(len(part.get("text") or "") for part in content or () if isinstance(part, dict))


def context_error(engine: Engine, prompt: str, param: str, limit: int | None = None) -> APIError:
    asked = f" + max_tokens {limit}" if limit is not None else ""
    return APIError(
        f"this model's maximum context length is {engine.max_model_len} tokens, but the request has "
        f"{prompt} prompt tokens{asked}; shorten the {param} or lower max_tokens",
        param=param,
        code="context_length_exceeded",
    )


def check_fits(engine: Engine, count: int, param: str) -> None:
    """Refuse a prompt too long for the context before tokenising it (no token spans more characters)."""
    if too_long_to_fit(count, engine.max_model_len, longest_token_chars(engine)):
        raise context_error(engine, f"more than {engine.max_model_len}", param)


async def build_prompt(build: Callable[..., list[int]], arg: Any, param: str, **kwargs: Any) -> list[int]:
    """Template and tokenise in a worker thread (the event loop keeps serving); a bad input is a 400."""
    try:
        return await run_in_threadpool(build, arg, **kwargs)
    except APIError:
        raise
    except Exception as exc:  # noqa: BLE001 - templates and image decoders raise many kinds; all mean bad input
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise APIError(f"cannot build the prompt from the {param}: {detail[:200]}", param=param) from None


def engine_error(exc: BaseException) -> APIError:
    """What a client hears when the engine fails (500) or stops (503) while it waits."""
    if isinstance(exc, APIError):
        return exc
    status = 500 if isinstance(exc, EngineFailure) else 503
    return APIError(str(exc)[:300] or type(exc).__name__, status=status, type="server_error")


def timeout_error(timeout_s: float | None) -> APIError:
    return APIError(
        f"the request ran longer than the server's request_timeout_s ({timeout_s:g} s); ask for fewer tokens",
        status=504,
        type="server_error",
        code="timeout",
    )


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the body is read already: the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def answer(whole: Awaitable[Any], handles: list[RequestHandle], request: Request, timeout_s: float | None) -> Any:
    """The result of ``whole`` (a non-streaming reply); its requests are cancelled if the client leaves or it
    runs past ``timeout_s``."""
    collect = asyncio.ensure_future(whole)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({collect, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (collect, gone):
            if task is gone or not task.done():
                task.cancel()
    if collect.done() and not collect.cancelled():
        return collect.result()
    for handle in handles:
        handle.cancel()
    if gone.done() and not gone.cancelled():
        raise APIError("the client closed the connection", status=499)
    raise timeout_error(timeout_s)
