"""A real JupyterHub on loopback with the classroom service registered in ``c.JupyterHub.services``.

The hub (``jupyterhub==6.1.1``, the dummy authenticator, the simple spawner) and its proxy
(``configurable-http-proxy`` from npm: ``make chp`` puts it in ``.venv/node_modules/.bin``) run as child
processes; the hub starts the classroom service on the tiny model itself, as a class's hub would. Tests
reach everything through the proxy, with tokens the hub issued to its users.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
USERS = ("alice", "bob", "carol")  # carol teaches: the documented configuration puts her in "teachers"


def proxy_binary() -> str | None:
    """configurable-http-proxy: $KM_CHP, the one ``make chp`` installs, or one on PATH."""
    for candidate in (os.environ.get("KM_CHP"), str(REPO / ".venv/node_modules/.bin/configurable-http-proxy")):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("configurable-http-proxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DOC = REPO / "docs" / "classroom.md"
# what a test hub changes in the documented configuration: loopback ports of its own, the dummy authenticator,
# the proxy from npm, the tiny model, and a service of its own that creates the users' tokens
TEST_OVERRIDES = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{folder}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.allowed_users = {users!r}
c.JupyterHub.spawner_class = "simple"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
_service = c.JupyterHub.services[0]
_service["url"] = "http://127.0.0.1:{service_port}"
_service["command"][_service["command"].index("--model") + 1] = {model!r}
_service["command"] += {extra_args!r}
_service["environment"].update({environment!r})
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "test-admin", "services": ["test-admin"], "scopes": ["admin:users", "tokens", "read:users"]}}
)
"""


def documented_config() -> str:
    """The ``jupyterhub_config.py`` of docs/classroom.md (the fenced block that declares the service)."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)
    return next(block for block in blocks if "c.JupyterHub.services" in block)


@dataclass
class Hub:
    """A running hub: its proxy URL, the classroom's URL through it, the users' tokens."""

    url: str
    process: subprocess.Popen[bytes]
    folder: Path
    admin_token: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def classroom(self) -> str:
        return self.url + "/services/classroom"

    def hub_api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/hub/api{path}", data=data, method=method)
        request.add_header("Authorization", f"token {self.admin_token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def log(self) -> str:
        path = self.folder / "hub.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""


def start_hub(folder: Path, model_dir: Path, proxy: str, service_args: list[str], timeout_s: float = 120.0) -> Hub:
    """Start the hub (which starts the proxy and the classroom service); return once the service answers."""
    port, hub_port, service_port, proxy_api_port = free_port(), free_port(), free_port(), free_port()
    admin_token = os.urandom(16).hex()
    environment = {"TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    overrides = TEST_OVERRIDES.format(
        port=port, hub_port=hub_port, proxy_api_port=proxy_api_port, folder=folder, users=set(USERS), proxy=proxy,
        service_port=service_port, model=str(model_dir), extra_args=["--folder", str(folder / "adapters"), *service_args],
        environment=environment, admin_token=admin_token,
    )  # fmt: skip
    config = documented_config() + overrides
    (folder / "jupyterhub_config.py").write_text(config)
    log = open(folder / "hub.log", "wb")  # noqa: SIM115 - the hub writes to it until it stops
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(folder / "jupyterhub_config.py")],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    hub = Hub(f"http://127.0.0.1:{port}", process, folder, admin_token)
    deadline = time.monotonic() + timeout_s
    while not _answers(hub.classroom + "/health"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_hub(hub)
            raise RuntimeError(f"the hub or the classroom service did not start:\n{hub.log()}")
        time.sleep(0.3)
    for user in USERS:
        hub.tokens[user] = hub.hub_api("POST", f"/users/{user}/tokens", {"note": "classroom test"})["token"]
    return hub


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_hub(hub: Hub) -> None:
    """Stop the hub, then whatever of its children (proxy, service) outlived it, each by its pid."""
    import psutil

    try:
        children = psutil.Process(hub.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    pid_file = hub.folder / "proxy.pid"  # the proxy outlives a hub that died
    if pid_file.is_file() and pid_file.read_text().strip().isdigit():
        try:
            proxy = psutil.Process(int(pid_file.read_text().strip()))
            if "configurable-http-proxy" in " ".join(proxy.cmdline()) and proxy not in children:
                children.append(proxy)
        except psutil.NoSuchProcess:
            pass
    if hub.process.poll() is None:
        hub.process.send_signal(signal.SIGTERM)
        try:
            hub.process.wait(20)
        except subprocess.TimeoutExpired:
            hub.process.kill()
            hub.process.wait(10)
    for child in children:
        try:
            child.terminate()
            child.wait(10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            child.kill()
