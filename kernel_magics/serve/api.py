"""Python API of serving: ``serve()``, ``chat()``, ``stop()``.

::

    srv = km.serve("tiny", adapters={"tuned": run.adapter_dir}, backend="auto")
    srv.url        # http://127.0.0.1:8000/v1 — any OpenAI client works against it
    srv.models     # ["tiny", "tuned"]
    srv.stop()

The keyword names equal the ``%swift serve`` / ``chat`` / ``stop`` argument names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..config import check_host, check_port, settings
from ..device import DeviceInfo, select_device
from ..errors import SwiftConfigError, SwiftServeError, did_you_mean
from .chat import ChatTarget, resolve_target
from .engines import EngineOptions, ServingEngine, choose, engine, names_where
from .ports import LOOPBACK, pick_port
from .server import Server, latest_server, running_servers

_NAME = re.compile(r"^[\w.\-/:@]+$")


def serve(
    model: str | None = None,
    adapters: Mapping[str, str | Path] | Iterable[Any] | str | Path | None = None,
    backend: str = "auto",
    host: str | None = None,
    port: int | None = None,
    api_key: str | None = None,
    name: str | None = None,
    device: str | None = None,
    max_batch_size: int = 32,
    max_model_len: int | None = None,
    trust_remote_code: bool | None = None,
    engine_args: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    allowed_local_media_path: str | Path | None = None,
    stream_interval_ms: float = 10.0,
    served_model_name: str | None = None,
    tool_call_parser: str | None = None,
    max_body_mb: float = 32.0,
    max_waiting: int = 256,
    max_choices: int = 128,
    request_timeout_s: float | None = None,
    default_max_tokens: int = 2048,
    allowed_hosts: str | Iterable[str] | None = None,
    wait: bool = True,
) -> Server:
    """Start an OpenAI-compatible server for ``model`` and its LoRA ``adapters`` (served by name, unmerged).

    ``backend``: an engine of :data:`kernel_magics.serve.engines.ENGINES` ("vllm", "transformers") or
    "auto" (the first that is installed and supports the device and model; it says which and why). Binds ``127.0.0.1`` unless ``host`` says
    otherwise (then ``api_key`` is required). Without ``port`` it takes the first free port from
    ``settings.port``. Returns the running :class:`Server` (``url``, ``models``, ``stats()``, ``stop()``).
    Vision-language models take OpenAI ``image_url`` parts (data: URLs; local files only inside
    ``allowed_local_media_path``). ``stream_interval_ms`` (transformers engine): tokens of a stream that
    come faster than this are sent as one chunk (0 = one chunk per token; vLLM takes
    ``engine_args={"stream_interval": N}`` in tokens). The model is served as ``served_model_name`` (default:
    the folder name of a local model, else the hub id). ``tool_call_parser`` ("hermes", "llama3_json"; default:
    chosen from the chat template) turns tool calls in replies into OpenAI ``tool_calls``.
    ``engine_args={"stream_interval": N}`` in tokens). Transformers engine limits: ``max_body_mb`` per
    request body (413 beyond), ``max_waiting`` queued choices (prompts x n; 503 with Retry-After beyond), ``max_choices`` per request (400 beyond),
    ``request_timeout_s`` per request (504 beyond; None = no limit), ``default_max_tokens`` for chat
    requests that name none, ``allowed_hosts``: the ``Host`` names a server without ``api_key`` answers
    (default localhost, 127.0.0.1, [::1]; "*" for any).
    """
    from ..hub import resolve_model

    backend = (backend or "auto").strip().lower()
    if backend != "auto":
        backend = engine(backend).name  # an unknown name fails here, before anything loads
    host = check_host(host or settings.host or "127.0.0.1")
    port = check_port(port) if port is not None else None
    api_key = api_key if api_key is not None else (settings.api_key or None)
    if host not in LOOPBACK and not api_key:
        raise SwiftConfigError(
            f"host {host} exposes the server beyond this machine; pass --api-key KEY as well (or keep 127.0.0.1)"
        )
    _check_limits(max_batch_size, max_model_len, stream_interval_ms)
    limits = _limits(max_body_mb, (max_waiting, max_choices), request_timeout_s, default_max_tokens, allowed_hosts)
    requested = str(model if model is not None else settings.default_model).strip()
    served = (served_model_name or "").strip() or short_model_name(requested)
    named_adapters = _adapter_map(adapters)
    name = _check_names(served, named_adapters, name)
    model_dir = resolve_model(requested)
    info = select_device(device)
    entry, reason = choose(backend, info, model_dir)
    chosen = entry.name
    check_exposure(chosen, host)
    trust = settings.trust_remote_code if trust_remote_code is None else bool(trust_remote_code)
    port, note = pick_port(host, port, settings.port)
    extra = _engine_args(entry, engine_args)
    media = _media_folder(entry, allowed_local_media_path)
    options = EngineOptions(info, max_batch_size, max_model_len, api_key, trust, extra, media)
    running = entry.create(model_dir, served, named_adapters, options)
    running.tool_call_parser = tool_call_parser or running.tool_call_parser
    server = Server(name, running, chosen, reason, host, port, api_key, model_dir, stream_interval_ms, limits)
    if note:
        print(note)
    started = time.perf_counter()
    server.start(wait=wait)
    took = f" in {time.perf_counter() - started:.1f} s" if wait else " (starting)"
    print(f"serving {', '.join(server.models)} with {chosen} ({reason}) at {server.url}{took}")
    return server


def short_model_name(model: str) -> str:
    """The id a model is served as: a local folder's name (never its absolute path), else the hub id."""
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


def _limits(
    max_body_mb: float,
    queue: tuple[int, int],
    request_timeout_s: float | None,
    default_max_tokens: int,
    allowed_hosts: str | Iterable[str] | None,
) -> Any:
    from .limits import LOOPBACK_HOSTS, ServeLimits

    max_waiting, max_choices = queue  # choices waiting in the engine, choices of one request
    hosts = [allowed_hosts] if isinstance(allowed_hosts, str) else list(allowed_hosts or ())
    hosts = [h.strip() for item in hosts for h in str(item).split(",") if h.strip()]
    if not max_body_mb > 0:
        raise SwiftConfigError(f"max_body_mb must be > 0, got {max_body_mb}")
    if max_waiting < 1:
        raise SwiftConfigError(f"max_waiting must be at least 1, got {max_waiting}")
    if max_choices < 1:
        raise SwiftConfigError(f"max_choices must be at least 1, got {max_choices}")
    if request_timeout_s is not None and not request_timeout_s > 0:
        raise SwiftConfigError(f"request_timeout_s must be > 0 (leave it out for no limit), got {request_timeout_s}")
    if default_max_tokens < 1:
        raise SwiftConfigError(f"default_max_tokens must be at least 1, got {default_max_tokens}")
    return ServeLimits(
        max_body_bytes=int(max_body_mb * 2**20),
        max_waiting=max_waiting,
        max_choices=max_choices,
        request_timeout_s=request_timeout_s,
        default_max_tokens=default_max_tokens,
        allowed_hosts=tuple(hosts) or LOOPBACK_HOSTS,
    )


def check_exposure(backend: str, host: str) -> None:
    """An engine whose entry says ``loopback_only`` (vLLM: its key guards /v1/* only) binds 127.0.0.1 only."""
    entry = engine(backend)
    if entry.loopback_only and host not in LOOPBACK:
        raise SwiftConfigError(
            f"{entry.loopback_only}, so it is served on 127.0.0.1 only (asked: {host}); "
            f"serve {host} with backend={names_where(lambda e: not e.loopback_only)}, or keep 127.0.0.1"
        )


def _engine_args(entry: ServingEngine, engine_args: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> dict:
    """``engine_args`` as a dict, for an engine whose entry ``takes_engine_args`` (else a one-line error)."""
    extra = dict(engine_args.items() if isinstance(engine_args, Mapping) else engine_args or [])
    if extra and not entry.takes_engine_args:
        raise SwiftConfigError(
            f"engine_args go to engines that take them ({names_where(lambda e: e.takes_engine_args)}); "
            f"the {entry.name} engine got {sorted(extra)}"[:300]
        )
    return extra


def _media_folder(entry: ServingEngine, folder: str | Path | None) -> Path | None:
    """``allowed_local_media_path`` checked: a folder, for an engine whose entry reads ``local_media``."""
    if folder is None:
        return None
    if not entry.local_media:
        raise SwiftConfigError(
            f"the {entry.name} engine reads no local media files; allowed_local_media_path works with "
            f"{names_where(lambda e: e.local_media)}"
        )
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise SwiftConfigError(f"allowed_local_media_path {folder} is not a folder")
    return path


def _check_limits(max_batch_size: int, max_model_len: int | None, stream_interval_ms: float) -> None:
    if max_batch_size < 1:
        raise SwiftConfigError(f"max_batch_size must be at least 1, got {max_batch_size}")
    if not stream_interval_ms >= 0:
        raise SwiftConfigError(f"stream_interval_ms must be >= 0 (0 = a chunk per token), got {stream_interval_ms}")
    if max_model_len is not None and max_model_len < 16:
        raise SwiftConfigError(f"max_model_len must be at least 16, got {max_model_len}")


def _check_names(served: str, adapters: dict[str, str], name: str | None) -> str:
    """The server's name (``name`` or the model's), checked against its adapters and running servers."""
    if served in adapters:
        raise SwiftConfigError(f"adapter name '{served}' is the base model's name; pick another adapter name")
    name = name or served
    for other in running_servers():
        if other.name == name:
            raise SwiftServeError(
                f"a server named '{name}' is already running at {other.url}; stop it (%swift stop {name}) "
                "or pass --name for a second one"
            )
    return name


def choose_backend(backend: str, device: DeviceInfo, model_dir: Path) -> tuple[str, str]:
    """The engine for ``backend`` on ``device`` and a short reason (see :func:`.engines.choose`)."""
    entry, reason = choose(backend, device, model_dir)
    return entry.name, reason


def _adapter_map(adapters: Any) -> dict[str, str]:
    """``{"name": path}``, ``[("name", path)]``, ``["name=path"]`` or one path -> ``{"name": "path"}``."""
    if adapters is None:
        return {}
    if isinstance(adapters, (str, Path)):
        adapters = [adapters]
    items = list(adapters.items()) if isinstance(adapters, Mapping) else list(adapters)
    result: dict[str, str] = {}
    for item in items:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            name, path = str(item[0]).strip(), str(item[1]).strip()
        elif isinstance(item, (str, Path)) and "=" in str(item) and not Path(str(item)).exists():
            name, _, path = str(item).partition("=")
            name, path = name.strip(), path.strip()
        else:
            path = str(item)
            name = Path(path).name if Path(path).name != "adapter" else Path(path).parent.name
        if not name or not _NAME.match(name):
            raise SwiftConfigError(f"adapter name {name!r} is not valid; use letters, digits, '-', '_' or '.'")
        if name in result:
            raise SwiftConfigError(f"two adapters are named '{name}'; give each its own name (NAME=PATH)")
        result[name] = path
    return result


def chat(
    url: str | None = None,
    model: str | None = None,
    compare: list[str] | str | None = None,
    api_key: str | None = None,
    system: str | None = None,
    temperature: float = 0.7,
    max_tokens: int = 256,
) -> ChatTarget:
    """Where ``%swift chat`` talks to: the latest server of this kernel, or any OpenAI-compatible ``url``.

    ``compare`` lists two or more models that answer the same prompt side by side ("base" means the
    server's base model). In a notebook the result shows as the chat panel.
    """
    return resolve_target(
        url=url,
        model=model,
        compare=compare,
        api_key=api_key,
        system=system,
        temperature=temperature,
        max_tokens=max_tokens,
        server=latest_server(),
    )


def stop(name: str | None = None, all: bool = False) -> list[str]:  # noqa: A002 - the flag is --all
    """Stop this kernel's servers (``name``: only that one; ``all``: training runs too). Returns the names."""
    from ..jobs import live_jobs, stop_all

    if all:
        stopped = [job.name for job in stop_all()]
    else:
        servers = running_servers()
        if name is not None:
            matches = [s for s in servers if s.name == name]
            if not matches:
                names = [s.name for s in servers] + [j.name for j in live_jobs() if j.kind != "server"]
                if name in names:
                    matches = [j for j in live_jobs() if j.name == name]  # a training run by name
                else:
                    running = ", ".join(names) or "none"
                    raise SwiftServeError(
                        f"no running server named '{name}' (running: {running}){did_you_mean(name, names)}"
                    )
            servers = matches
        for server in servers:
            server.stop()
        stopped = [s.name for s in servers]
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop: no server is running in this kernel")
    return stopped


def serve_forever(server: Server) -> None:
    """Terminal: show where the server listens and keep it up until Ctrl-C."""
    print(server.to_text())
    print("press Ctrl-C to stop")
    try:
        while not server.done:
            server.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
