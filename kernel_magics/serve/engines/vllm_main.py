"""``python -m kernel_magics.serve.engines.vllm_main ARGS``: vLLM's OpenAI server, answering like ours where it does not.

It runs vLLM's own entry point (same arguments as ``python -m vllm.entrypoints.openai.api_server``) with
one ASGI layer in front of vLLM's app:

* ``GET /v1/models/{id}`` (the ``openai`` client's ``models.retrieve``), which vLLM lacks, answered from
  vLLM's own ``/v1/models`` (so its API-key check applies);
* a request field vLLM's request models do not have (vLLM would drop it and log a line) gets a 400
  naming it, the same answer the transformers engine gives (``protocol.check_fields``);
* a ``logit_bias`` outside [-100, 100] (vLLM would clamp it) or with negative ids, and a JSON schema
  that is invalid or that xgrammar cannot enforce, get the transformers engine's 400 too
  (``request_checks``).

It also bounds the whitespace in the JSON of a tool call (:func:`bound_tool_call_whitespace`): vLLM
compiles a tool call's grammar (an xgrammar structural tag) with free whitespace between JSON tokens,
whatever ``disable_any_whitespace`` says, and a weak model forced to call a tool can spend every token on
blanks there (``{"arguments": {\\r\\r\\r...``).
"""

from __future__ import annotations

import json
from typing import Any

TOOL_CALL_MAX_WHITESPACE = 1  # blanks allowed in a row in a tool call's JSON: `{"city": "Oslo"}`, as models write it
ENDPOINTS = {
    "/v1/chat/completions": ("vllm.entrypoints.openai.chat_completion.protocol", "ChatCompletionRequest"),
    "/v1/completions": ("vllm.entrypoints.openai.completion.protocol", "CompletionRequest"),
}


def honoured_fields(module: str, name: str) -> set[str]:
    """Field names and aliases of one of vLLM's request models."""
    import importlib

    model = getattr(importlib.import_module(module), name)
    names = set(model.model_fields)
    names |= {f.alias for f in model.model_fields.values() if getattr(f, "alias", None)}
    return names


def _error(message: str, status: int, param: str | None, code: str | None) -> tuple[int, bytes]:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return status, json.dumps(body).encode()


class ParityLayer:
    """ASGI middleware adding ``models.retrieve`` and the 400 for fields vLLM would ignore."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.fields = {path: honoured_fields(*where) for path, where in ENDPOINTS.items()}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.startswith("/v1/models/"):
            await self._retrieve(scope, path.removeprefix("/v1/models/"), send)
        elif method == "POST" and path in self.fields:
            await self._checked(scope, receive, send, self.fields[path])
        else:
            await self.app(scope, receive, send)

    async def _retrieve(self, scope: dict[str, Any], model_id: str, send: Any) -> None:
        status, headers, body = await self._inner(dict(scope, path="/v1/models", raw_path=b"/v1/models"))
        if status == 200:
            models = json.loads(body).get("data", [])
            found = [m for m in models if m.get("id") == model_id]
            if found:
                status, body = 200, json.dumps(found[0]).encode()
            else:
                names = ", ".join(m.get("id", "") for m in models)
                message = f"the model '{model_id}' does not exist; this server has: {names}"
                status, body = _error(message, 404, "model", "model_not_found")
            headers = [(b"content-type", b"application/json")]
        await _respond(send, status, body, headers)

    async def _inner(self, scope: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run vLLM's app on a GET and keep its answer."""
        answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def keep(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        await self.app(scope, receive, keep)
        return answer["status"], answer["headers"], answer["body"]

    async def _checked(self, scope: dict[str, Any], receive: Any, send: Any, fields: set[str]) -> None:
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            request = json.loads(body)
        except ValueError:
            request = None  # vLLM answers malformed JSON itself
        refusal = _refusal(request, fields) if isinstance(request, dict) else None
        if refusal is not None:
            await _respond(send, 400, refusal, [(b"content-type", b"application/json")])
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _refusal(request: dict[str, Any], fields: set[str]) -> bytes | None:
    """The 400 body for a request the transformers engine would refuse too (None: pass it to vLLM)."""
    from ..protocol import APIError
    from ..request_checks import check_logit_bias, check_schema

    unknown = sorted(k for k, v in request.items() if k not in fields and v is not None)
    if unknown:
        message = f"{unknown[0]} is not supported by this server's engine (vLLM); leave it out"
        return _error(message, 400, unknown[0], "unsupported_parameter")[1]
    try:
        if isinstance(request.get("logit_bias"), dict):
            check_logit_bias(request["logit_bias"], None)  # ids beyond the vocabulary: vLLM's own 400
        for schema, param in _schemas(request):
            check_schema(schema, param)
    except APIError as exc:
        return json.dumps(exc.body()).encode()
    return None


def _schemas(request: dict[str, Any]) -> list[tuple[Any, str]]:
    """The JSON schemas of a request: its ``response_format``'s and each tool's parameters."""
    found: list[tuple[Any, str]] = []
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and "schema" in spec:
            found.append((spec["schema"], "response_format"))
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("parameters") is not None:
            found.append((function["parameters"], "tools"))
    return found


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bound_tool_call_whitespace(tag: Any) -> Any:
    """``tag`` (an xgrammar ``StructuralTag``) with at most :data:`TOOL_CALL_MAX_WHITESPACE` blanks in a row
    in each of its JSON parts, in place; parts that set their own bound or are not JSON keep it.

    One blank, not none: a model trained on ``json.dumps`` output writes ``": "`` and ``", "``, and a
    grammar without them would push it off the text it knows.
    """
    from pydantic import BaseModel
    from xgrammar.structural_tag import JSONSchemaFormat

    if isinstance(tag, JSONSchemaFormat) and tag.style == "json" and tag.max_whitespace_cnt is None:
        tag.max_whitespace_cnt = TOOL_CALL_MAX_WHITESPACE
    elif isinstance(tag, BaseModel):
        for field in type(tag).model_fields:
            bound_tool_call_whitespace(getattr(tag, field))
    elif isinstance(tag, list | tuple):
        for item in tag:
            bound_tool_call_whitespace(item)
    return tag


def _bound_tool_call_grammars() -> None:
    """Wrap vLLM's builder of tool-call grammars (which tool parsers look up when a request comes) so each
    grammar it builds goes through :func:`bound_tool_call_whitespace`."""
    from vllm.tool_parsers import structural_tag_registry as registry

    build = registry.get_model_structural_tag

    def build_bounded(*args: Any, **kwargs: Any) -> Any:
        return bound_tool_call_whitespace(build(*args, **kwargs))

    registry.get_model_structural_tag = build_bounded


def main() -> None:
    from vllm.entrypoints.launchers.api_server import entry

    _bound_tool_call_grammars()

    build_app = entry.build_app

    def build_app_with_parity(*args: Any, **kwargs: Any) -> Any:
        from starlette.middleware import Middleware

        app = build_app(*args, **kwargs)
        # vLLM's app has built its middleware stack already (add_middleware would refuse): put ours
        # outermost and let Starlette rebuild the stack on the first request
        app.user_middleware.insert(0, Middleware(ParityLayer))
        app.middleware_stack = None
        return app

    entry.build_app = build_app_with_parity
    entry.main()


if __name__ == "__main__":
    main()
