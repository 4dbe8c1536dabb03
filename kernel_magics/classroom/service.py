"""``python -m kernel_magics classroom --model M``: the JupyterHub service a class shares.

The hub starts it from ``c.JupyterHub.services`` and hands it ``JUPYTERHUB_SERVICE_URL`` (where to listen),
``JUPYTERHUB_SERVICE_PREFIX`` (the path the hub's proxy forwards), ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_API_TOKEN`` (its own token, to check students' tokens with the hub). It loads the base model
once into an in-process engine of the serving registry (or vLLM's engine, run inside the service:
:mod:`.vllm_engine`), loads the adapters students published before,
and serves the OpenAI API (``/v1/...``: the plain server's app, limits and replies) beside the classroom's
own routes (:mod:`.routes`), every request authenticated by the hub (:mod:`.auth`) and scheduled fairly
(:mod:`.fairness`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import SwiftConfigError, SwiftServeError
from ..signatures import from_arguments
from .fairness import FairScheduler, TokenMeter
from .settings import ClassroomSettings
from .slots import SlotQueue
from .store import AdapterStore

DEFAULT_PORT = 8765
# engines the registry runs as their own server, which the classroom runs inside the service instead
IN_SERVICE = {"vllm": "kernel_magics.classroom.vllm_engine"}


@dataclass
class Classroom:
    """The service's parts: the teacher's settings, the shared engine, the adapter store, turns and slots."""

    settings: ClassroomSettings
    engine: Any
    backend: str
    store: AdapterStore
    turns: FairScheduler
    slots: SlotQueue

    def public_settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self.settings).items() if k not in ("host", "port", "folder")}

    def close(self) -> None:
        self.turns.stop()
        self.engine.shutdown()


def classroom_backend(name: str, device: Any, model_dir: Path) -> str:
    """The engine the classroom serves with: an in-process one of the registry (requests are scheduled in
    front of its queue and adapters loaded into it), on a text model; one line naming what to do otherwise."""
    from ..hub import is_vision_model
    from ..serve.engines import engine, names_where

    entry = engine(name)
    if not entry.in_process and entry.name not in IN_SERVICE:
        raise SwiftConfigError(
            f"the classroom schedules each student's requests in front of an in-process engine; {entry.name} runs "
            f"its own server, where per-user turns and adapter uploads cannot reach: use --backend "
            f"{names_where(lambda e: e.in_process or e.name in IN_SERVICE)}"
        )
    if is_vision_model(model_dir):
        raise SwiftConfigError(f"the classroom serves text models; {model_dir.name} is a vision-language model")
    why_not = entry.why_not(device, model_dir)
    if why_not:
        raise SwiftServeError(f"the {entry.name} engine cannot serve {model_dir.name} here: {why_not}")
    return entry.name


def open_classroom(settings: ClassroomSettings) -> Classroom:
    """Load the base model once, then every adapter the store holds; start the turns."""
    from ..argspec import load
    from ..device import select_device
    from ..hub import resolve_model
    from ..serve.api import short_model_name
    from ..serve.engines import EngineOptions, engine
    from .shared_engine import load_adapter

    settings.check()
    model_dir = resolve_model(settings.model)
    device = select_device(None if settings.device == "auto" else settings.device)
    backend = classroom_backend(settings.backend, device, model_dir)
    served = short_model_name(settings.model)
    if backend in IN_SERVICE:
        shared = load(f"{IN_SERVICE[backend]}:create")(model_dir, served, device, settings)
    else:
        shared = engine(backend).create(model_dir, served, {}, EngineOptions(device, settings.max_batch_size, None, None, False))
    shared.start()
    names = {settings.model, served, str(model_dir), model_dir.name}
    store = AdapterStore(Path(settings.adapter_folder()), model_dir, names, settings.max_rank, int(settings.max_adapter_mb * 2**20))
    for model, folder in store.stored().items():
        load_adapter(shared, model, folder)
    turns = FairScheduler(shared, settings.max_batch_size, settings.per_user_concurrency, TokenMeter(settings.tokens_per_minute))
    slots = SlotQueue(settings.total_slots, settings.slot_time_limit_min * 60, settings.heartbeat_timeout_s)
    return Classroom(settings, shared, backend, store, turns.start(), slots)


def build_app(room: Classroom, identity: Any, prefix: str = "/") -> Any:
    """The ASGI app: the OpenAI routes over the shared engine, the classroom's routes, hub authentication."""
    from ..argspec import load
    from ..serve.app import create_app
    from ..serve.engines import engine
    from ..serve.limits import ServeLimits
    from .auth import HubAuthMiddleware
    from .routes import classroom_routes
    from .shared_engine import SharedEngine

    settings = room.settings
    limits = ServeLimits(
        max_body_bytes=max(32 * 2**20, int((settings.max_adapter_mb + 1) * 2**20)),
        max_waiting=settings.per_user_waiting,
        default_max_tokens=settings.default_max_tokens,
        allowed_hosts=("*",),  # the hub's proxy forwards any Host; every request carries a hub token
    )
    view = SharedEngine(room.engine, room.turns, settings.chat_policy)
    if room.backend in IN_SERVICE:
        honoured = load(f"{IN_SERVICE[room.backend]}:HONOURED")
    else:
        honoured = engine(room.backend).honoured(room.engine)
    app = create_app(view, None, 10.0, limits, honoured)
    app.include_router(classroom_routes(room))
    app.add_middleware(HubAuthMiddleware, identity=identity)
    return PrefixStrip(app, prefix)


class PrefixStrip:
    """Pure ASGI: answers the paths the hub's proxy forwards (``/services/NAME/v1/...``) and the bare ones."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app = app
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.prefix and scope["type"] == "http" and scope["path"].startswith(self.prefix + "/"):
            scope = {**scope, "path": scope["path"][len(self.prefix) :], "root_path": scope.get("root_path", "") + self.prefix}
        await self.app(scope, receive, send)


def listen_address(settings: ClassroomSettings) -> tuple[str, int]:
    """Where to listen: the flags, else ``JUPYTERHUB_SERVICE_URL`` (a hub-managed service), else loopback."""
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    host = settings.host or url.hostname or "127.0.0.1"
    port = settings.port or url.port or DEFAULT_PORT
    return host, port


def hub_identity(settings: ClassroomSettings) -> Any:
    from .auth import HubIdentity

    api_url, token = os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        raise SwiftConfigError(
            "the classroom runs as a JupyterHub service: JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN are not set "
            "(declare it in c.JupyterHub.services with an api_token; see docs/classroom.md)"
        )
    name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "classroom")
    return HubIdentity(api_url, token, name, settings.teacher_group)


@from_arguments(ClassroomSettings, positional=("model",))
def classroom(arguments: ClassroomSettings) -> None:
    """Run the classroom service until it is stopped (the hub stops it with SIGTERM)."""
    import uvicorn

    identity = hub_identity(arguments)
    host, port = listen_address(arguments)
    room = open_classroom(arguments)
    app = build_app(room, identity, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"))
    print(f"classroom: serving {', '.join(room.engine.models)} with {room.backend} on http://{host}:{port}", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    finally:
        room.close()
