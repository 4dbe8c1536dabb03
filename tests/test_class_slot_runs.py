"""A run on a classroom hub trains only in a slot the classroom service grants: queued with the service's
line in its notes, trained once granted, stopped with a checkpoint when the slot is taken back.

The service's queue is the real :class:`~kernel_magics.classroom.slots.SlotQueue` behind a loopback HTTP
adapter of its three slot routes (authentication through a real hub is tests/test_classroom_hub.py's part).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import kernel_magics as km
from kernel_magics.classroom.slots import SlotQueue
from kernel_magics.testing import tiny_dataset

OPTIONS = dict(logging_steps=1, lora_r=4, verbose=False)


def _serve(queue: SlotQueue) -> ThreadingHTTPServer:
    class Slots(BaseHTTPRequestHandler):
        def _answer(self, answer: dict) -> None:
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path.strip("/").split("/")
            if parts == ["classroom", "slots"]:
                self._answer(queue.acquire("alice", "run"))
            else:
                self._answer(queue.heartbeat(parts[2], "alice"))

        def do_DELETE(self) -> None:  # noqa: N802
            self._answer(queue.release(self.path.strip("/").split("/")[2], "alice"))

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slots)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def classroom(monkeypatch):
    def start(queue: SlotQueue) -> None:
        server = _serve(queue)
        monkeypatch.setenv("KM_CLASSROOM_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "student-token")
        monkeypatch.setenv("KM_CLASSROOM_HEARTBEAT_S", "0.5")
        servers.append(server)

    servers: list[ThreadingHTTPServer] = []
    yield start
    for server in servers:
        server.shutdown()


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_run_waits_for_its_class_slot_then_trains(tiny_model, workspace, classroom):
    queue = SlotQueue(slots=1, time_limit_s=600, heartbeat_timeout_s=600)
    classroom(queue)
    held = queue.acquire("bob", "bob's run")  # the class's only slot is taken
    run = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=3, **OPTIONS)
    _until(lambda: any(n.startswith("queued: 1st in line") for n in run.notes), 120, "the queued line")
    time.sleep(1.5)
    assert not run.rows and run.status == "queued"  # nothing trains without the slot
    queue.release(held["lease_id"], "bob")
    assert run.wait(300) == "finished", run.error
    assert queue.status()["held"] == [] and queue.status()["queued"] == []  # the slot was given back


def test_a_slot_taken_back_stops_the_run_with_a_checkpoint(tiny_model, workspace, classroom):
    queue = SlotQueue(slots=1, time_limit_s=8, heartbeat_timeout_s=600)
    classroom(queue)
    run = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=100000, save_steps=100000, **OPTIONS)
    assert run.wait(300) == "stopped", run.error
    assert run.checkpoints and run.rows
