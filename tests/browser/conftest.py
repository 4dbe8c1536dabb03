"""Real JupyterLab in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Fixtures: ``lab`` (a JupyterLab server on loopback with a token, one per session, its root folder a temp
dir) and ``page`` (a fresh Chromium page). Helpers live in ``jlab.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# the tests import their helpers as `from jlab import ...`
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHROMIUM = os.environ.get("KM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.needs("chromium"))  # skips without it, fails if KM_REQUIRE names it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path

    def notebook_url(self, name: str) -> str:
        # reset: the lab would otherwise restore the notebooks earlier tests opened (and start their kernels),
        # and "run all" could reach one of them instead of this notebook
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, km_cache: Path):
    """A JupyterLab server on 127.0.0.1 per test module (isolated), sharing the session's tiny-model cache."""
    root = tmp_path_factory.mktemp("lab-root")
    port, token = _free_port(), "km-browser-test"
    settings_dir = root / ".lab-settings"
    news = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no news pop-up over the screenshots
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        KERNEL_MAGICS_CACHE_DIR=str(km_cache),
        KERNEL_MAGICS_WORKSPACE=str(root / "km-workspace"),
        JUPYTER_CONFIG_DIR=str(root / ".jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(root / ".jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
        TMPDIR=str(tmp_path_factory.mktemp("lab-tmp")),
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.disable_check_xsrf=True",
        "--LabApp.expose_app_in_browser=True",
        "--ServerApp.open_browser=False",
        "--allow-root",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(root / "jupyterlab.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start: " + (root / "jupyterlab.log").read_text()[-2000:])
    if proc.poll() is not None:
        pytest.fail("JupyterLab exited: " + (root / "jupyterlab.log").read_text()[-2000:])
    yield Lab(url, token, root)
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


@pytest.fixture()
def page(browser, lab):
    """A fresh page; afterwards every kernel the test started is shut down (servers and runs with it)."""
    page = browser.new_page()
    yield page
    page.close()
    _shutdown_kernels(lab)


def _shutdown_kernels(lab: Lab) -> None:
    import json

    try:
        with urllib.request.urlopen(f"{lab.url}/api/kernels?token={lab.token}", timeout=10) as resp:
            kernels = json.load(resp)
    except OSError:
        return
    for kernel in kernels:
        request = urllib.request.Request(f"{lab.url}/api/kernels/{kernel['id']}?token={lab.token}", method="DELETE")
        try:
            urllib.request.urlopen(request, timeout=30)
        except OSError:
            pass
