"""Who is calling: JupyterHub's own tokens, checked with the hub; no password of the service's own.

Every request but ``/health`` carries a hub API token (``Authorization: token T`` or ``Bearer T``: the
``JUPYTERHUB_API_TOKEN`` each single-user server has, or one from the hub's token page). The hub says whose
it is (``jupyterhub.services.auth.HubAuth``, cached for a minute) and whether it grants access to this
service; the service's own token (with ``read:users``) then tells whether that user is a teacher: a hub
admin or a member of the teacher group.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi.responses import JSONResponse

from ..serve.protocol import APIError

OPEN_PATHS = frozenset({"/health"})
USER_CACHE_S = 30.0


@dataclass(frozen=True)
class Caller:
    """The hub user behind a request."""

    name: str
    teacher: bool = False


CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("km_classroom_caller", default=None)


class HubUnavailable(RuntimeError):
    """The hub did not answer (the caller gets a 503, not a 401)."""


class HubIdentity:
    """Identify hub users by their tokens, and tell teachers from students."""

    def __init__(self, api_url: str, service_token: str, service_name: str, teacher_group: str) -> None:
        from jupyterhub.services.auth import HubAuth

        self.api_url = api_url.rstrip("/")
        self.service_token = service_token
        self.teacher_group = teacher_group
        self.auth = HubAuth(api_url=self.api_url, api_token=service_token, cache_max_age=60)
        self.access_scopes = {f"access:services!service={service_name}", "access:services"}
        self._users: dict[str, tuple[float, dict[str, Any]]] = {}

    async def identify(self, token: str) -> Caller | None:
        """The caller owning ``token``; None when the hub knows no such token or it grants no access here."""
        try:
            model = await self.auth.user_for_token(token, sync=False)
        except Exception as exc:  # noqa: BLE001 - the hub is down or refused the service's own token
            raise HubUnavailable(f"the hub did not answer ({type(exc).__name__}); try again in a moment") from None
        if not model or model.get("kind", "user") != "user" or not model.get("name"):
            return None
        if not (set(model.get("scopes", ())) & self.access_scopes) and not self._grants_access(model):
            return None
        return Caller(model["name"], await self._is_teacher(model["name"]))

    def _grants_access(self, model: dict[str, Any]) -> bool:
        return any(self.auth.check_scopes({scope}, model) for scope in self.access_scopes)

    async def _is_teacher(self, name: str) -> bool:
        user = await self._user(name)
        return bool(user.get("admin")) or self.teacher_group in (user.get("groups") or ())

    async def _user(self, name: str) -> dict[str, Any]:
        cached = self._users.get(name)
        if cached and time.monotonic() - cached[0] < USER_CACHE_S:
            return cached[1]
        import httpx

        url = f"{self.api_url}/users/{quote(name, safe='')}"
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(url, headers={"Authorization": f"token {self.service_token}"})
        user = response.json() if response.status_code == 200 else {}
        self._users[name] = (time.monotonic(), user)
        return user


def token_of(headers: dict[bytes, bytes]) -> str:
    """The token of ``Authorization: token T`` / ``Bearer T`` ("" when there is none)."""
    header = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() in ("token", "bearer") else ""


class HubAuthMiddleware:
    """Pure ASGI: every request but ``/health`` must carry a hub token of a user allowed to use the service."""

    def __init__(self, app: Any, identity: HubIdentity) -> None:
        self.app = app
        self.identity = identity

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = token_of(dict(scope.get("headers") or ()))
        try:
            caller = await self.identity.identify(token) if token else None
        except HubUnavailable as exc:
            await _refuse(scope, receive, send, APIError(str(exc), status=503, type="server_error"))
            return
        if caller is None:
            error = APIError(
                "send your JupyterHub API token as 'Authorization: token TOKEN' (JUPYTERHUB_API_TOKEN in your "
                "server); this one is unknown to the hub or does not grant access to this service",
                status=401, type="authentication_error", code="invalid_api_key",
            )  # fmt: skip
            await _refuse(scope, receive, send, error)
            return
        scope["km_caller"] = caller
        reset = CALLER.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            CALLER.reset(reset)


async def _refuse(scope: dict[str, Any], receive: Any, send: Any, error: APIError) -> None:
    await JSONResponse(error.body(), status_code=error.status, headers=error.headers)(scope, receive, send)
