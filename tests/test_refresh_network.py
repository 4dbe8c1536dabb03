"""km.refresh_catalog against real sockets on 127.0.0.1: a refusing port, a server that accepts and never
answers, and servers answering 200 with bad JSON. Each ends in one line, soon, with the catalog unchanged."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from huggingface_hub import constants

import kernel_magics as km
from kernel_magics.config import settings
from kernel_magics.search import refresh
from kernel_magics.search.catalog import hub_catalog_path

OLD_CATALOG = b'{"id": "an/earlier-card"}\n'
GIVE_UP_S = 60.0  # the test's own limit: a refresh still running then has no time limit of its own


@pytest.fixture()
def endpoint_at(monkeypatch, tmp_path):
    """Point huggingface_hub at a local URL, with small timeouts and a catalog written earlier."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "km-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setattr(refresh, "CONNECT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(refresh, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(refresh, "TOTAL_TIMEOUT_S", 3.0)
    hub_catalog_path().parent.mkdir(parents=True, exist_ok=True)
    hub_catalog_path().write_bytes(OLD_CATALOG)

    def point(url: str) -> None:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setattr(constants, "ENDPOINT", url)

    return point


def _refresh_in_thread() -> km.search.refresh.RefreshReport:
    """The refresh, waited for at most GIVE_UP_S (a hang fails the test instead of the suite)."""
    found: dict = {}
    worker = threading.Thread(target=lambda: found.update(report=km.refresh_catalog(limit=2)), daemon=True)
    worker.start()
    worker.join(GIVE_UP_S)
    assert not worker.is_alive(), f"refresh_catalog did not return within {GIVE_UP_S:.0f} s"
    return found["report"]


def _one_line_and_unchanged(report, prefix: str) -> None:
    assert report.offline and report.message.startswith(prefix), report.message
    assert "\n" not in report.message and len(report.message) <= 300
    assert report.message.endswith("the model catalog was not refreshed and nothing changed")
    assert hub_catalog_path().read_bytes() == OLD_CATALOG
    assert [p.name for p in hub_catalog_path().parent.glob("*.tmp")] == []


def test_a_refusing_port_is_one_line_at_once(endpoint_at):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint_at(f"http://127.0.0.1:{port}")
    report = _refresh_in_thread()
    _one_line_and_unchanged(report, f"could not reach the Hub (127.0.0.1:{port}: ConnectionRefusedError")


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_a_server_that_never_answers_ends_after_the_total_time_limit(endpoint_at, silent_server):
    endpoint_at(silent_server)
    report = _refresh_in_thread()
    _one_line_and_unchanged(report, "could not reach the Hub (TimeoutError: no complete answer within 3 s)")


def _answering(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("body", "detail"),
    [(b"{not json", "JSONDecodeError"), (b'{"models": 1}', "HubAnswerError"), (b"[1, 2]", "HubAnswerError")],
    ids=["not-json", "an-object", "not-models"],
)
def test_a_200_with_bad_json_is_one_line(endpoint_at, body, detail):
    server = _answering(body)
    try:
        endpoint_at(f"http://127.0.0.1:{server.server_address[1]}")
        report = _refresh_in_thread()
    finally:
        server.shutdown()
        server.server_close()
    _one_line_and_unchanged(report, f"the Hub's answer is not the expected JSON ({detail}: ")


def test_network_errors_are_recognised_by_their_package_not_their_class():
    for module in ("httpx._exceptions", "httpx2._exceptions", "requests.exceptions", "urllib3.exceptions"):
        error = type("ConnectError", (Exception,), {"__module__": module})("refused")
        assert refresh._is_network_error(error), module
    assert not refresh._is_network_error(RuntimeError("a bug of ours"))
    assert not refresh._is_network_error(type("Odd", (Exception,), {"__module__": "mypkg.errors"})())
