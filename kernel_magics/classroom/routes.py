"""The classroom's own routes beside the OpenAI ones: adapters, training slots and the teacher's status.

* ``PUT /classroom/adapters/{user}/{name}`` (a zip of the adapter's two files; only ``user`` may), ``DELETE``
  the same (``user`` or a teacher), ``GET /classroom/adapters`` (what the caller may chat with);
* ``POST /classroom/slots`` (ask for a training slot), ``POST /classroom/slots/{id}/heartbeat``,
  ``DELETE /classroom/slots/{id}`` (release; a teacher may end anyone's), ``GET /classroom/slots``;
* ``GET /classroom/me``: who the hub says the caller is;
* ``GET /classroom/status``: teachers only, the JSON behind the teacher's panel.

Every refusal is one line in an OpenAI error object, and a refused upload changes nothing.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import APIRouter, Request

from ..errors import SwiftError
from ..serve.protocol import APIError
from .auth import Caller
from .shared_engine import load_adapter, may_chat, unload_adapter
from .status import class_status
from .store import adapter_id


def classroom_routes(state: Any) -> APIRouter:
    """The routes over ``state`` (a :class:`~.service.Classroom`: settings, engine, store, turns, slots)."""
    router = APIRouter(prefix="/classroom")
    changes = threading.Lock()  # one adapter change at a time (count check, load, commit)

    @router.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        caller = _caller(request)
        return {"name": caller.name, "teacher": caller.teacher}

    @router.put("/adapters/{user}/{name}", status_code=201)
    async def publish(user: str, name: str, request: Request) -> dict[str, Any]:
        caller = _caller(request)
        model = _checked(lambda: adapter_id(user, name))
        if caller.name != user:
            raise APIError(f"only {user} may publish or replace {model}", status=403, type="permission_error")
        archive = await request.body()
        return await asyncio.to_thread(_publish, state, changes, user, name, archive)

    @router.delete("/adapters/{user}/{name}")
    async def delete(user: str, name: str, request: Request) -> dict[str, Any]:
        caller = _caller(request)
        model = _checked(lambda: adapter_id(user, name))
        if caller.name != user and not caller.teacher:
            raise APIError(f"only {user} or a teacher may delete {model}", status=403, type="permission_error")
        if model not in state.engine.adapter_dirs:
            raise APIError(f"there is no adapter {model}", status=404, type="not_found_error")
        return await asyncio.to_thread(_delete, state, changes, user, name)

    @router.get("/adapters")
    async def adapters(request: Request) -> dict[str, Any]:
        caller = _caller(request)
        base = state.engine.models[0]
        mine = [m for m in state.engine.models[1:] if may_chat(caller, m, base, state.settings.chat_policy)]
        return {"base": base, "adapters": mine, "chat_policy": state.settings.chat_policy}

    @router.post("/slots", status_code=201)
    async def acquire(request: Request) -> dict[str, Any]:
        body = await _json(request)
        return state.slots.acquire(_caller(request).name, str(body.get("label") or ""))

    @router.post("/slots/{lease_id}/heartbeat")
    async def heartbeat(lease_id: str, request: Request) -> dict[str, Any]:
        body = await _json(request)
        figures = body.get("figures") if isinstance(body.get("figures"), dict) else {}
        return _checked(lambda: state.slots.heartbeat(lease_id, _caller(request).name, figures), status=404)

    @router.delete("/slots/{lease_id}")
    async def release(lease_id: str, request: Request) -> dict[str, Any]:
        caller = _caller(request)
        return _checked(lambda: state.slots.release(lease_id, caller.name, caller.teacher), status=404)

    @router.get("/slots")
    async def slots(request: Request) -> dict[str, Any]:
        _caller(request)
        return state.slots.status()

    @router.get("/status")
    async def status(request: Request) -> dict[str, Any]:
        caller = _caller(request)
        if not caller.teacher:
            raise APIError("the class status is for teachers (hub admins or the teacher group)", status=403, type="permission_error")
        return class_status(state)

    return router


def _publish(state: Any, changes: threading.Lock, user: str, name: str, archive: bytes) -> dict[str, Any]:
    model = f"{user}/{name}"
    with changes:
        limit = state.settings.adapters_per_student
        others = [n for n in state.store.names(user) if n != name]
        if len(others) >= limit:
            raise APIError(f"{user} already has {len(others)} adapters, the class's limit; delete one first", status=409, type="invalid_request_error")  # fmt: skip
        upload = _checked(lambda: state.store.check(archive), status=422)
        staged = state.store.stage(upload)
        replaced = state.store.folder(user, name) if model in state.engine.adapter_dirs else None
        try:
            state.turns.exclusive(lambda: _swap(state.engine, model, staged, replaced))
        except SwiftError as exc:
            state.store.discard(staged)
            raise APIError(str(exc), status=422) from None
        folder = state.store.commit(staged, user, name)
        state.engine.adapter_dirs[model] = folder  # peft read the files; the store's folder is their home now
    return {"id": model, "rank": upload.rank, "bytes": upload.size_bytes, "replaced": replaced is not None}


def _swap(engine: Any, model: str, staged: Any, replaced: Any) -> None:
    """Load ``staged`` as ``model``; a replaced adapter comes back when the new one does not load."""
    if replaced is not None:
        unload_adapter(engine, model)
    try:
        load_adapter(engine, model, staged)
    except SwiftError:
        if replaced is not None:
            load_adapter(engine, model, replaced)
        raise


def _delete(state: Any, changes: threading.Lock, user: str, name: str) -> dict[str, Any]:
    model = f"{user}/{name}"
    with changes:
        state.turns.exclusive(lambda: unload_adapter(state.engine, model))
        state.store.remove(user, name)
    return {"id": model, "deleted": True}


def _caller(request: Request) -> Caller:
    caller = request.scope.get("km_caller")
    if caller is None:
        raise APIError("send your JupyterHub API token", status=401, type="authentication_error")
    return caller


def _checked(call: Any, status: int = 400) -> Any:
    try:
        return call()
    except SwiftError as exc:
        raise APIError(str(exc), status=status, type="invalid_request_error" if status != 404 else "not_found_error") from None


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        import json

        body = json.loads(raw)
    except ValueError:
        raise APIError("the request body is not valid JSON", code="invalid_json") from None
    return body if isinstance(body, dict) else {}
