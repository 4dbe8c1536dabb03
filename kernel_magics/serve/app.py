"""The thin FastAPI app that puts the OpenAI protocol in front of an in-process :class:`Engine`.

Endpoints: ``GET /health``, ``GET /v1/models`` (and ``/v1/models/{id}``), ``POST /v1/chat/completions``, ``POST /v1/completions``
(both streaming as server-sent events the way the official ``openai`` client reads them) and
``GET /metrics`` (Prometheus text). Bad input always gets a 4xx with an OpenAI error object; the
optional API key is checked on every request with a constant-time comparison.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engines.base import Engine
from .limits import BodySizeLimit, HostCheck, ServeLimits
from .metrics import prometheus_text
from .protocol import APIError, ChatCompletionRequest, CompletionRequest, check_fields, model_list
from .replies import chat_reply, completion_reply
from .schema_doc import ModelCard, ModelList, chat_responses, completion_responses, finish_schema, plain_responses

OPEN_PATHS = frozenset({"/health"})


def create_app(
    engine: Engine,
    api_key: str | None = None,
    stream_interval_ms: float = 0.0,
    limits: ServeLimits | None = None,
    honoured: Mapping[str, set[str]] | None = None,
) -> FastAPI:
    """Build the app serving ``engine`` (``api_key``: required as ``Authorization: Bearer KEY``;
    ``stream_interval_ms``: least time between two chunks of a stream, 0 = a chunk per token;
    ``limits``: what one request may ask, see :class:`ServeLimits`; ``honoured``: the request fields
    the engine acts on per endpoint, from its registry entry, default the transformers text engine's)."""
    stream_interval_s = max(0.0, stream_interval_ms) / 1000
    limits = limits or ServeLimits()
    if honoured is None:
        from .engines.transformers import TEXT_FIELDS as honoured
    app = FastAPI(title="kernel_magics OpenAI-compatible server", docs_url=None, redoc_url=None)
    _add_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)
    else:  # no key: only this machine's names (a web page cannot rebind one of its own to us)
        app.add_middleware(HostCheck, allowed_hosts=limits.allowed_hosts)
    _add_model_routes(app, engine)
    _add_completion_routes(app, engine, honoured, stream_interval_s, limits)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = finish_schema(schema, list(engine.models), getattr(engine, "vocab_size", None))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure answers with an OpenAI error object (400 for a body that does not validate)."""

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


def _add_model_routes(app: FastAPI, engine: Engine) -> None:
    """``/health``, ``/v1/models`` (and one model's card), ``/metrics``."""

    @app.get("/health", responses=plain_responses())
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", responses=plain_responses(ModelList))
    async def models() -> dict[str, Any]:
        base = engine.models[0]
        return model_list(engine.models, parents={m: base for m in engine.models[1:]})

    @app.get("/metrics", response_class=PlainTextResponse, responses=plain_responses())
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(prometheus_text(engine), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models/{model:path}", responses=plain_responses(ModelCard))
    async def model(model: str) -> dict[str, Any]:
        _check_model(engine, model)
        base = engine.models[0]
        return model_list([model], parents={m: base for m in engine.models[1:]})["data"][0]


def _add_completion_routes(
    app: FastAPI, engine: Engine, honoured: Mapping[str, set[str]], stream_interval_s: float, limits: ServeLimits
) -> None:
    """``POST /v1/chat/completions`` and ``POST /v1/completions``: fields the engine does not act on refused."""

    @app.post("/v1/chat/completions", responses=chat_responses())
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        _check_model(engine, body.model)
        check_fields(body, honoured["chat"])
        return await chat_reply(engine, body, stream_interval_s, limits, request)

    @app.post("/v1/completions", responses=completion_responses())
    async def completions(body: CompletionRequest, request: Request) -> Any:
        _check_model(engine, body.model)
        check_fields(body, honoured["completions"])
        return await completion_reply(engine, body, stream_interval_s, limits, request)


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


def _check_model(engine: Engine, model: str) -> None:
    if model not in engine.models:
        raise APIError(
            f"the model '{model}' does not exist; this server has: {', '.join(engine.models)}",
            status=404,
            param="model",
            code="model_not_found",
        )
