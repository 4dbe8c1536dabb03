"""What one request may ask of the server, checked before any heavy work.

``ServeLimits`` holds every bound (body size, stop strings, images, waiting requests, default reply
length, per-request time); the check functions turn a request that exceeds one into an OpenAI error
naming the field, and :class:`BodySizeLimit` refuses an oversized body while it arrives, before it is
parsed. The engine never sees a request that breaks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .protocol import APIError, ChatMessage, SamplingRequest

DRAIN_BYTES = 256 * 2**20  # an oversized body is read and dropped up to this much, then the connection closes
SEED_LIMIT = 2**63
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # torch.Generator.manual_seed takes a signed 64-bit value


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on one request and on the queue (every one a ``serve()`` keyword or a sane default)."""

    max_body_bytes: int = 32 * 2**20  # a few base64 images fit; a 40 MB prompt does not
    max_stop_strings: int = 4  # as the OpenAI API
    max_stop_chars: int = 256
    max_images: int = 8  # image parts per request
    max_waiting: int = 256  # choices queued (prompts x n of each request) before a 503 with Retry-After
    max_choices: int = 128  # prompts x n of one request (400 beyond)
    default_max_tokens: int = 2048  # chat replies when the request names no max_tokens
    request_timeout_s: float | None = None  # a request running longer ends with a 504
    limit_concurrency: int = 1024  # open connections uvicorn accepts before answering 503
    retry_after_s: int = 1
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host names a key-less server answers ("*": any)


def check_sampling(body: SamplingRequest, limits: ServeLimits) -> None:
    """Sampling fields the engine cannot honour: an out-of-range seed, too many or too long stop strings."""
    if body.seed is not None and not 0 <= body.seed < SEED_LIMIT:
        raise APIError(f"seed must be between 0 and 2**63 - 1, got {str(body.seed)[:30]}", param="seed")
    stops = body.stop or []
    if len(stops) > limits.max_stop_strings:
        raise APIError(f"at most {limits.max_stop_strings} stop sequences are allowed, got {len(stops)}", param="stop")
    longest = max(map(len, stops), default=0)
    if longest > limits.max_stop_chars:
        raise APIError(
            f"stop sequences may be at most {limits.max_stop_chars} characters long, got {longest}", param="stop"
        )


def check_images(messages: list[ChatMessage], limits: ServeLimits) -> None:
    count = sum(
        1
        for message in messages
        if isinstance(message.content, list)
        for part in message.content
        if part.type == "image_url"
    )
    if count > limits.max_images:
        raise APIError(f"at most {limits.max_images} images per request are allowed, got {count}", param="messages")


def check_queue(engine: Any, limits: ServeLimits, choices: int = 1, param: str = "n") -> None:
    """A 400 when one request asks for more choices (prompts x ``n``) than the server takes; a 503 with
    ``Retry-After`` when its choices do not fit in the engine's waiting queue now."""
    cap = min(limits.max_choices, limits.max_waiting)
    if choices > cap:
        knob = "max_choices" if cap == limits.max_choices else "max_waiting"
        raise APIError(
            f"this request asks for {choices} choices (prompts x n); this server takes at most {cap} per request "
            f"({knob}); send fewer prompts or a smaller n",
            param=param,
            code="too_many_choices",
        )
    pending = getattr(engine, "pending", None)
    if pending is not None and pending() + choices > limits.max_waiting:
        raise APIError(
            f"the server is busy ({limits.max_waiting} choices waiting at most); retry in a moment",
            status=503,
            type="server_error",
            code="server_busy",
            headers={"Retry-After": str(limits.retry_after_s)},
        )


def too_long_to_fit(text_chars: int, max_model_len: int, longest_token_chars: int) -> bool:
    """True when a text of ``text_chars`` characters needs more tokens than the context holds, whatever
    the tokenizer does (no token covers more than ``longest_token_chars`` characters)."""
    return text_chars > max_model_len * max(1, longest_token_chars)


def longest_token_chars(engine: Any) -> int:
    """The most characters one token of the engine's tokenizer can stand for (cached on the engine)."""
    cached = getattr(engine, "_km_longest_token", None)
    if cached is not None:
        return cached
    tokenizer = getattr(engine, "tokenizer", None)
    try:
        vocab = tokenizer.get_vocab() if tokenizer is not None else {}
        longest = max((len(piece) for piece in vocab), default=0) or 1024
    except Exception:  # noqa: BLE001 - unknown tokenizer: a generous bound
        longest = 1024
    try:
        engine._km_longest_token = longest
    except AttributeError:
        pass
    return longest


class BodySizeLimit:
    """Pure ASGI guard: a request body larger than ``max_bytes`` gets a 413 before it is read whole."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, drained=await _drain(receive, DRAIN_BYTES))
            return
        seen = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body without Content-Length: the app answers 413
                    raise StarletteHTTPException(413, detail=self.message())
            return message

        await self.app(scope, counting_receive, send)

    def message(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes / 2**20:g} MiB; send less "
            "(or start the server with a larger max_body_mb)"
        )

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, drained: bool) -> None:
        error = APIError(self.message(), status=413, code="request_too_large")
        headers = {} if drained else {"Connection": "close"}
        await JSONResponse(error.body(), status_code=413, headers=headers)(scope, receive, send)


async def _drain(receive: Any, budget: int) -> bool:
    """Read and drop the body (so the client, still sending, reads our answer); False past ``budget``."""
    seen = 0
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


class HostCheck:
    """Pure ASGI guard for a key-less server: only ``Host`` headers naming this machine are answered.

    A web page in the user's browser can send requests to 127.0.0.1 under a name it controls (DNS
    rebinding); such a request carries that name in ``Host`` and gets a 403 here.
    """

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host  # drop the port
        if not name or name in self.allowed:  # browsers always send Host: a missing one is no web page
            await self.app(scope, receive, send)
            return
        error = APIError(
            f"this server answers only Host: {', '.join(sorted(self.allowed))}; start it with allowed_hosts=[...] "
            "or an api_key to serve other names",
            status=403,
            type="permission_error",
            code="host_not_allowed",
        )
        await JSONResponse(error.body(), status_code=403)(scope, receive, send)
