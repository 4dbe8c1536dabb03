"""``Server``: an OpenAI-compatible server owned by the kernel, as a background :class:`~kernel_magics.jobs.Job`.

In-process engines (transformers) run behind uvicorn in a thread with its own event loop, on a socket
we bind first (so the port is ours before anything loads). Engines with their own server (vLLM) run as
a child process in its own process group with its own ``TMPDIR``; ``stop()`` ends the whole group and
waits for the port to be free. Either way the notebook stays responsive, and ``stop()`` (or
``%swift stop``, or kernel shutdown) frees the engine, its memory and the port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import SwiftServeError
from ..jobs import FAILED, RUNNING, STOPPED, STOPPING, Job, live_jobs
from .engines import ServingEngine
from .engines import engine as registry_entry
from .ports import bind_socket, group_members, parent_death_signal, short_temp_base

_recent: list[Server] = []
_recent_lock = threading.Lock()


def latest_server() -> Server | None:
    """The most recently started server of this kernel that is still running."""
    with _recent_lock:
        servers = list(_recent)
    for server in reversed(servers):
        if not server.done:
            return server
    return None


def running_servers() -> list[Server]:
    return [job for job in live_jobs("server") if isinstance(job, Server)]


class Server(Job):
    """A running OpenAI-compatible server: ``url``, ``models``, ``stats()``, ``client()``, ``stop()``."""

    kind = "server"

    def __init__(
        self,
        name: str,
        engine: Any,
        backend: str,
        reason: str,
        host: str,
        port: int,
        api_key: str | None = None,
        model_dir: Path | None = None,
        stream_interval_ms: float = 0.0,
        limits: Any = None,
    ) -> None:
        super().__init__(name)
        self.engine = engine
        self.backend = backend
        self.reason = reason
        self.host = host
        self.port = port
        self.api_key = api_key or None
        self.model_dir = model_dir
        self.stream_interval_ms = stream_interval_ms
        self.limits = limits  # a ServeLimits (None: the defaults)
        self.models: list[str] = list(engine.models)
        self.log_path: Path | None = None
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._stop_lock = threading.Lock()

    # -- addresses -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""
        return self.base_url + "/v1"

    @property
    def model(self) -> str:
        """The base model's served name."""
        return self.models[0]

    @property
    def adapters(self) -> list[str]:
        return self.models[1:]

    @property
    def entry(self) -> ServingEngine:
        """The registry entry of this server's engine: its declared policy."""
        return registry_entry(self.backend)

    # -- start -----------------------------------------------------------------------------------
    def start(self, wait: bool = True) -> Server:
        with _recent_lock:
            _recent.append(self)
        started = time.perf_counter()
        if self.entry.in_process:
            self._start_in_process()
        else:
            self._start_process()
        if wait:
            self._wait_healthy(started)
        else:
            threading.Thread(target=self._wait_quietly, args=(started,), daemon=True).start()
        return self

    def _start_in_process(self) -> None:
        import uvicorn

        from .app import create_app
        from .limits import ServeLimits

        try:
            self._socket = bind_socket(self.host, self.port)
        except OSError as exc:  # free when picked, taken since by another program
            message = f"port {self.port} on {self.host} was taken before the server started ({exc.strerror}); try again"
            self.set_state(FAILED, message)
            raise SwiftServeError(message) from None
        try:
            self.engine.start()
        except BaseException as exc:
            self._socket.close()
            self.set_state(FAILED, str(exc))
            raise
        limits = self.limits or ServeLimits()
        honoured = self.entry.honoured(self.engine)
        app = create_app(self.engine, self.api_key, self.stream_interval_ms, limits, honoured)
        config = uvicorn.Config(
            app,
            limit_concurrency=limits.limit_concurrency,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            timeout_keep_alive=30,
        )
        self._uvicorn = uvicorn.Server(config)
        sock = self._socket
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [sock]}, name=f"km-server-{self.name}", daemon=True
        )
        self._thread.start()

    def _start_process(self) -> None:
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f"km-{self.engine.name}-", dir=short_temp_base()))
        self.log_path = self._tmpdir / "server.log"
        env = self.engine.environment(os.environ)
        env["TMPDIR"] = str(self._tmpdir)
        argv = self.engine.command(self.host, self.port)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps writing to it
        try:
            self._process = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends vLLM's helpers too
                preexec_fn=parent_death_signal(),
                cwd=str(self._tmpdir),
            )
        finally:
            log.close()

    def _wait_healthy(self, started: float) -> None:
        timeout = getattr(self.engine, "startup_timeout_s", 120.0)
        deadline = time.monotonic() + timeout
        health = self.base_url + getattr(self.engine, "health_path", "/health")
        while time.monotonic() < deadline:
            if self.status in (STOPPING, STOPPED):
                return
            if self._process is not None and self._process.poll() is not None:
                detail = self._log_error()
                if "address already in use" in detail.lower():
                    detail = f"port {self.port} was taken by another program during start-up; try again ({detail})"
                message = f"the {self.backend} server exited during start-up: {detail}"
                self.set_state(FAILED, message)
                self._cleanup_process()
                raise SwiftServeError(message)
            if self._thread is not None and not self._thread.is_alive():
                message = "the server thread ended during start-up"
                self.set_state(FAILED, message)
                raise SwiftServeError(message)
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    if response.status == 200 and self._answers_as_ours():
                        self.set_state(RUNNING)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1 if self._process is None else 0.5)
        message = f"the {self.backend} server did not answer {health} within {timeout:.0f} s"
        self.stop()
        self.error = message
        raise SwiftServeError(message)

    def _answers_as_ours(self) -> bool:
        """Is the server on our port the one we started? (A child binds late; another may take the port.)"""
        if self._process is None:
            return True  # we bound the socket ourselves before loading anything
        request = urllib.request.Request(self.url + "/models")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                ids = [m.get("id") for m in json.loads(response.read().decode("utf-8")).get("data", [])]
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return ids[: len(self.models)] == self.models

    def _wait_quietly(self, started: float) -> None:
        try:
            self._wait_healthy(started)
        except SwiftServeError:
            pass  # the state is FAILED and .error says why

    def _log_error(self) -> str:
        """The most telling line of the child's log (the last error line, else the last line)."""
        if self.log_path is None or not self.log_path.is_file():
            return "no log"
        lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        for line in reversed(lines):
            if "Error" in line or "error:" in line:
                return line[-300:] + f" (log: {self.log_path})"
        return (lines[-1][-300:] if lines else "no output") + f" (log: {self.log_path})"

    # -- use -------------------------------------------------------------------------------------
    def client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client for this server."""
        import openai

        return openai.OpenAI(base_url=self.url, api_key=self.api_key or "none", **kwargs)

    def metrics(self) -> str:
        """The server's ``/metrics`` text (Prometheus format)."""
        request = urllib.request.Request(self.base_url + "/metrics")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode("utf-8")

    def stats(self) -> Any:
        """Per-request TTFT and tokens/s as a DataFrame (a serving process: its engine's own metrics)."""
        from ..argspec import load
        from .metrics import records_frame

        if self.entry.in_process:
            return records_frame(self.engine.records())
        if self.status != RUNNING:
            raise SwiftServeError(f"server '{self.name}' is {self.status}; its metrics went with it")
        return load(self.entry.stats)(self.metrics())

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving: free the engine (and device memory) and release the port."""
        with self._stop_lock:
            if self.done:
                return
            self.set_state(STOPPING)
            if self._process is not None:
                self._stop_process(timeout)
            else:
                self._stop_in_process(timeout)
            self._wait_port_free(timeout=10)
            self.set_state(STOPPED)

    def _stop_in_process(self, timeout: float) -> None:
        self.engine.shutdown()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self.engine = _Stopped(self.engine)

    def _stop_process(self, timeout: float) -> None:
        process = self._process
        assert process is not None
        if process.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._kill_group_leftovers(process.pid)
        self._cleanup_process()

    @staticmethod
    def _kill_group_leftovers(pgid: int, timeout: float = 10.0) -> None:
        """SIGKILL what is left of the child's process group and wait until none of it runs."""
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _cleanup_process(self) -> None:
        if self._tmpdir is not None:
            keep = self.status == FAILED  # keep the log of a failed start
            if not keep:
                shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _wait_port_free(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host, self.port)) != 0:
                    return
            time.sleep(0.1)

    # -- display ---------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "backend": self.backend,
            "url": self.url,
            "models": ", ".join(self.models),
            "why": self.reason,
            "api_key": "required" if self.api_key else "none (loopback only)",
        }

    def to_text(self) -> str:
        return "\n".join(f"{k:>8}: {v}" for k, v in self.summary().items())

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
            f"<code>{html.escape(str(v))}</code></td></tr>"
            for k, v in self.summary().items()
        )
        return f"<table class='km-server'>{rows}</table>"

    def __repr__(self) -> str:
        extra = f": {self.error}" if self.error else ""
        return f"<Server {self.name!r} {self.status} {self.backend} {self.url} models={self.models}{extra}>"


class _Stopped:
    """Keeps the names and request records of a stopped in-process engine, drops its weights."""

    def __init__(self, engine: Any) -> None:
        self.name = engine.name
        self.models = list(engine.models)
        self._records = engine.records()

    def records(self) -> list[Any]:
        return list(self._records)
