"""The thin FastAPI app that puts the OpenAI protocol in front of an in-process :class:`Engine`.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(both streaming as server-sent events the way the official ``openai`` client reads them) and
``GET /metrics`` (Prometheus text). Bad input always gets a 4xx with an OpenAI error object; the
optional API key is checked on every request with a constant-time comparison.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engines.base import Engine, EngineFailure, RequestHandle, SamplingParams
from .limits import (
    BodySizeLimit,
    HostCheck,
    ServeLimits,
    check_images,
    check_queue,
    check_sampling,
    longest_token_chars,
    too_long_to_fit,
)
from .metrics import prometheus_text
from .protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingRequest,
    chat_chunk,
    chat_response,
    completion_response,
    model_list,
    new_id,
    now,
    usage,
)

OPEN_PATHS = frozenset({"/health"})


def create_app(
    engine: Engine, api_key: str | None = None, stream_interval_ms: float = 0.0, limits: ServeLimits | None = None
) -> FastAPI:
    """Build the app serving ``engine`` (``api_key``: required as ``Authorization: Bearer KEY``;
    ``stream_interval_ms``: least time between two chunks of a stream, 0 = a chunk per token;
    ``limits``: what one request may ask, see :class:`ServeLimits`)."""
    stream_interval_s = max(0.0, stream_interval_ms) / 1000
    limits = limits or ServeLimits()
    app = FastAPI(title="kernel_magics OpenAI-compatible server", docs_url=None, redoc_url=None)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = APIError(f"internal error: {type(exc).__name__}: {str(exc)[:200]}", status=500, type="server_error")
        return JSONResponse(error.body(), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_body(exc), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        error = APIError(str(exc.detail), status=exc.status_code, type=kind)
        return JSONResponse(error.body(), status_code=exc.status_code)

    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)
    else:  # no key: only this machine's names (a web page cannot rebind one of its own to us)
        app.add_middleware(HostCheck, allowed_hosts=limits.allowed_hosts)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        base = engine.models[0]
        return model_list(engine.models, parents={m: base for m in engine.models[1:]})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(prometheus_text(engine), media_type="text/plain; version=0.0.4")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        _check_model(engine, body.model)
        check_sampling(body, limits)
        check_images(body.messages, limits)
        check_queue(engine, limits)
        vision = getattr(engine, "accepts_images", False)  # image_url parts go to engines that take images
        messages = [
            {"role": m.role if m.role != "developer" else "system", "content": m.parts() if vision else m.text()}
            for m in body.messages
        ]
        _check_fits(engine, sum(_chars(m["content"]) for m in messages), "messages")
        prompt_ids = await _prompt(engine.chat_prompt, messages, "messages")
        handle = _submit(engine, body, prompt_ids, body.limit(), "chatcmpl", stream_interval_s, limits)
        if body.stream:
            return _sse(_chat_events(handle, body), limits.request_timeout_s)
        text, finish, prompt_tokens, completion_tokens = await _answer(handle, request, limits.request_timeout_s)
        return chat_response(handle.request_id, body.model, text, finish, prompt_tokens, completion_tokens)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        _check_model(engine, body.model)
        check_sampling(body, limits)
        check_queue(engine, limits)
        if body.echo:
            raise APIError("echo is not supported", param="echo")
        _check_fits(engine, len(body.text()), "prompt")
        prompt_ids = await _prompt(engine.encode, body.text(), "prompt")
        if not prompt_ids:
            raise APIError("the prompt is empty", param="prompt")
        handle = _submit(engine, body, prompt_ids, body.limit(), "cmpl", stream_interval_s, limits)
        if body.stream:
            return _sse(_completion_events(handle, body), limits.request_timeout_s)
        text, finish, prompt_tokens, completion_tokens = await _answer(handle, request, limits.request_timeout_s)
        return completion_response(handle.request_id, body.model, text, finish, prompt_tokens, completion_tokens)

    return app


class APIKeyMiddleware:
    """Pure ASGI check of ``Authorization: Bearer KEY`` on every path but ``/health``.

    (Starlette's ``@app.middleware("http")`` would pass every streamed chunk through an extra task and
    memory stream; this one only looks at the request head.)
    """

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        given = header[7:].strip() if header[:7].lower() == b"bearer " else b""
        if secrets.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        error = APIError(
            "invalid or missing API key; send it as 'Authorization: Bearer KEY'",
            status=401,
            type="authentication_error",
            code="invalid_api_key",
        )
        await JSONResponse(error.body(), status_code=401)(scope, receive, send)


def _validation_body(exc: RequestValidationError) -> dict[str, Any]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return APIError("the request body is not valid JSON", code="invalid_json").body()
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return APIError(f"{param}: {message}" if param else message, param=param).body()


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    return sum(len(part.get("text") or "") for part in content or () if isinstance(part, dict))


def _context_error(engine: Engine, prompt: str, param: str, limit: int | None = None) -> APIError:
    asked = f" + max_tokens {limit}" if limit is not None else ""
    return APIError(
        f"this model's maximum context length is {engine.max_model_len} tokens, but the request has "
        f"{prompt} prompt tokens{asked}; shorten the {param} or lower max_tokens",
        param=param,
        code="context_length_exceeded",
    )


def _check_fits(engine: Engine, chars: int, param: str) -> None:
    """Refuse a prompt too long for the context before tokenising it (no token spans more characters)."""
    if too_long_to_fit(chars, engine.max_model_len, longest_token_chars(engine)):
        raise _context_error(engine, f"more than {engine.max_model_len}", param)


async def _prompt(build: Callable[[Any], list[int]], arg: Any, param: str) -> list[int]:
    """Template and tokenise in a worker thread (the event loop keeps serving); a bad input is a 400."""
    try:
        return await run_in_threadpool(build, arg)
    except APIError:
        raise
    except Exception as exc:  # noqa: BLE001 - templates and image decoders raise many kinds; all mean bad input
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise APIError(f"cannot build the prompt from the {param}: {detail[:200]}", param=param) from None


def _check_model(engine: Engine, model: str) -> None:
    if model not in engine.models:
        raise APIError(
            f"the model '{model}' does not exist; this server has: {', '.join(engine.models)}",
            status=404,
            param="model",
            code="model_not_found",
        )


def _submit(
    engine: Engine,
    body: SamplingRequest,
    prompt_ids: list[int],
    limit: int | None,
    prefix: str,
    stream_interval_s: float,
    limits: ServeLimits,
) -> RequestHandle:
    room = engine.max_model_len - len(prompt_ids)
    if room <= 0 or (limit is not None and limit > room):
        raise _context_error(engine, str(len(prompt_ids)), "messages" if prefix == "chatcmpl" else "prompt", limit)
    params = SamplingParams(
        max_tokens=limit if limit is not None else min(room, limits.default_max_tokens),
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=tuple(body.stop or ()),
        seed=body.seed,
    )
    handle = RequestHandle(
        request_id=new_id(prefix),
        model=body.model,
        prompt_ids=prompt_ids,
        params=params,
        loop=asyncio.get_running_loop(),
        stream=body.stream,
        stream_interval_s=stream_interval_s if body.stream else 0.0,
    )
    try:
        engine.submit(handle)
    except RuntimeError as exc:
        raise APIError(str(exc), status=503, type="server_error") from None
    return handle


def _engine_error(exc: Exception) -> APIError:
    """What a client hears when the engine fails (500) or stops (503) while it waits."""
    if isinstance(exc, APIError):
        return exc
    status = 500 if isinstance(exc, EngineFailure) else 503
    return APIError(str(exc)[:300] or type(exc).__name__, status=status, type="server_error")


def _timeout_error(timeout_s: float | None) -> APIError:
    return APIError(
        f"the request ran longer than the server's request_timeout_s ({timeout_s:g} s); ask for fewer tokens",
        status=504,
        type="server_error",
        code="timeout",
    )


async def _collect(handle: RequestHandle) -> tuple[str, str, int, int]:
    parts: list[str] = []
    try:
        async for delta in handle.deltas():
            parts.append(delta.text)
            if delta.finish_reason is not None:
                return "".join(parts), delta.finish_reason, delta.prompt_tokens, delta.completion_tokens
    except Exception as exc:  # noqa: BLE001 - every failure reaches the client as an OpenAI error
        raise _engine_error(exc) from None
    raise APIError("the request ended without a result", status=503, type="server_error")


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the body is read already: the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _answer(handle: RequestHandle, request: Request, timeout_s: float | None) -> tuple[str, str, int, int]:
    """The whole reply of a non-streaming request; the request is cancelled if its client leaves or it
    runs past ``timeout_s``."""
    collect = asyncio.ensure_future(_collect(handle))
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({collect, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (collect, gone):
            task.cancel()
    if collect.done() and not collect.cancelled():
        return collect.result()
    handle.cancel()
    if gone.done() and not gone.cancelled():
        raise APIError("the client closed the connection", status=499)
    raise _timeout_error(timeout_s)


def _sse(events: AsyncIterator[dict[str, Any] | str], timeout_s: float | None = None) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                async for event in events:
                    yield event if isinstance(event, str) else f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except TimeoutError:
            yield f"data: {json.dumps(_timeout_error(timeout_s).body())}\n\n"
        except Exception as exc:  # noqa: BLE001 - the engine failed or stopped mid-stream
            yield f"data: {json.dumps(_engine_error(exc).body())}\n\n"
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _chat_events(handle: RequestHandle, body: ChatCompletionRequest) -> AsyncIterator[dict[str, Any] | str]:
    rid, created = handle.request_id, now()
    yield chat_chunk(rid, body.model, created, {"role": "assistant", "content": ""})
    # every content chunk differs only in its text: encode the rest once
    head, tail = json.dumps(chat_chunk(rid, body.model, created, {"content": ""}), ensure_ascii=False).rsplit(
        '"content": ""', 1
    )
    head, tail = "data: " + head + '"content": ', tail + "\n\n"
    async for delta in handle.deltas():
        if delta.text:
            yield head + json.dumps(delta.text, ensure_ascii=False) + tail
        if delta.finish_reason is not None:
            yield chat_chunk(rid, body.model, created, {}, delta.finish_reason)
            if body.include_usage:
                chunk = chat_chunk(rid, body.model, created, None)
                chunk["usage"] = usage(delta.prompt_tokens, delta.completion_tokens)
                yield chunk


async def _completion_events(handle: RequestHandle, body: CompletionRequest) -> AsyncIterator[dict[str, Any]]:
    rid, created = handle.request_id, now()
    async for delta in handle.deltas():
        if delta.text or delta.finish_reason is not None:
            chunk = completion_response(rid, body.model, delta.text, delta.finish_reason, 0, 0, created)
            del chunk["usage"]
            yield chunk
        if delta.finish_reason is not None and body.include_usage:
            chunk = completion_response(rid, body.model, "", None, 0, 0, created)
            chunk["choices"] = []
            chunk["usage"] = usage(delta.prompt_tokens, delta.completion_tokens)
            yield chunk
