"""No request can hang or starve the transformers server: failures reach every waiting client, limits hold.

Every test here sends what a hostile or careless client would, and checks that each request gets an
OpenAI-shaped answer (never a hang, never a plain-text 500) and that the server still serves afterwards.
How a server starts and what it lets in besides requests is in ``tests/test_serve_reliability_exposure.py``.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time

import httpx
import pytest
from serve_support import finish_reasons

import kernel_magics as km
from kernel_magics.serve.engines.base import RequestHandle, SamplingParams

HELLO = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER_S = 60  # a client gives up after this long: reaching it means the server left the request hanging


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = km.serve("tiny", backend="transformers", name="reliability", stream_interval_ms=0)
    yield srv
    srv.stop()


def _post(server, body=None, timeout=ANSWER_S, **kwargs):
    if body is not None:
        kwargs["json"] = body
    return httpx.post(server.url + "/chat/completions", timeout=timeout, **kwargs)


def _stream(server, body, timeout=ANSWER_S):
    """Status, parsed events and whether [DONE] came, for a streaming chat request."""
    events, done = [], False
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=timeout) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, [response.json()], False
        for line in response.iter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return 200, events, done


def _healthy(server):
    assert httpx.get(server.base_url + "/health", timeout=10).json() == {"status": "ok"}
    reply = _post(server, {"model": "tiny", "messages": HELLO, "max_tokens": 3, "temperature": 0})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3


def _error(response):
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and len(error["message"]) <= 300
    return error


def test_the_storm_gets_an_answer_for_every_request(server):
    """Four streams, a 2**64 seed, four 200,000-character stop strings and a 40 MB prompt, all at once."""
    normal = {"model": "tiny", "messages": HELLO, "max_tokens": 40, "temperature": 0.8, "stream": True}
    seed = {**normal, "stream": False, "seed": 2**64}
    stops = {**normal, "stop": ["x" * 200_000] * 4}
    huge = {"model": "tiny", "messages": [{"role": "user", "content": "word " * 8_000_000}], "max_tokens": 5}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        streams = [pool.submit(_stream, server, normal) for _ in range(4)]
        bad_seed = pool.submit(_post, server, seed)
        bad_stops = pool.submit(_stream, server, stops)
        too_big = pool.submit(_post, server, huge)
        for status, events, done in (f.result() for f in streams):
            assert status == 200 and done
            assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        assert bad_seed.result().status_code == 400 and _error(bad_seed.result())["param"] == "seed"
        status, events, _ = bad_stops.result()
        assert status == 400 and events[0]["error"]["param"] == "stop"
        assert too_big.result().status_code == 413
        assert _error(too_big.result())["code"] == "request_too_large"
    _healthy(server)


@pytest.mark.parametrize("seed", [2**64, 2**63, -1])
def test_out_of_range_seeds_are_400s(server, seed):
    response = _post(server, {"model": "tiny", "messages": HELLO, "max_tokens": 3, "seed": seed})
    assert response.status_code == 400 and _error(response)["param"] == "seed"


def test_the_largest_seed_samples(server):
    body = {"model": "tiny", "messages": HELLO, "max_tokens": 3, "temperature": 1.0, "seed": 2**63 - 1}
    assert _post(server, body).status_code == 200


def _live(engine) -> int:
    """Requests the engine is decoding now (its first batch and the joiners)."""
    return sum(1 for h in engine._in_flight._handles if not h.finished and not h.cancelled.is_set())


def _running_with_joiners(server, joiners: int) -> tuple[list, list]:
    """A long stream the engine is decoding, and ``joiners`` requests that joined its batch."""
    engine = server.engine
    long = {"model": "tiny", "messages": HELLO, "max_tokens": 3000, "temperature": 0, "stream": True}
    pool = concurrent.futures.ThreadPoolExecutor(joiners + 1)
    first = pool.submit(_stream, server, long)
    deadline = time.monotonic() + 30
    while not _live(engine) and time.monotonic() < deadline:
        time.sleep(0.01)
    short = {"model": "tiny", "messages": HELLO, "max_tokens": 2000, "temperature": 0}
    others = [
        pool.submit(_stream, server, {**short, "stream": True}) if i % 2 else pool.submit(_post, server, short)
        for i in range(joiners)
    ]
    while _live(engine) < joiners + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.pending() == 0 and _live(engine) == joiners + 1  # all joined the running batch
    return [first, *others], [pool]


def test_an_engine_failure_reaches_every_request_in_the_batch_joiners_too(server, monkeypatch):
    engine = server.engine
    model = engine.model
    failing = threading.Event()

    class Failing:
        def __call__(self, *args, **kwargs):
            if failing.is_set():
                raise RuntimeError("device lost")
            return model(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(model, name)

    monkeypatch.setattr(engine, "model", Failing())
    futures, pools = _running_with_joiners(server, joiners=4)
    failing.set()
    answers = [f.result(timeout=ANSWER_S) for f in futures]
    failing.clear()
    pools[0].shutdown()
    for answer in answers:
        if isinstance(answer, httpx.Response):  # non-streaming: an OpenAI error with status 500
            assert answer.status_code == 500 and _error(answer)["type"] == "server_error"
            assert "device lost" in _error(answer)["message"]
        else:  # streaming: the stream ends with an error event, then [DONE]
            status, events, done = answer
            assert status == 200 and done and "device lost" in events[-1]["error"]["message"]
    _healthy(server)


def test_a_request_whose_sampler_cannot_be_built_leaves_the_batch_alone(server):
    """The per-row guard: an engine caller bypassing the protocol checks only fails its own request."""
    import asyncio

    engine = server.engine
    prompt = engine.chat_prompt(HELLO)

    async def run() -> list:
        loop = asyncio.get_running_loop()
        handles = [
            RequestHandle(f"r{i}", "tiny", prompt, SamplingParams(max_tokens=5, seed=seed), loop)
            for i, seed in enumerate((3, 2**64, 4))
        ]
        for handle in handles:
            engine.submit(handle)
        return await finish_reasons(handles, ANSWER_S)

    good, bad, other = asyncio.run(run())
    assert good == "length" and other == "length"
    assert isinstance(bad, RuntimeError) and "seed" in str(bad)
    _healthy(server)


def test_template_errors_are_400s(server, monkeypatch):
    template = "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    monkeypatch.setattr(server.engine.tokenizer, "chat_template", template)
    response = _post(server, {"model": "tiny", "messages": HELLO, "max_tokens": 3})
    assert response.status_code == 400 and "roles must alternate" in _error(response)["message"]
    monkeypatch.undo()
    _healthy(server)


# -- limits and abandoned work ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def narrow(tiny_model):
    """One request decodes at a time, one may wait; small bodies; short default replies."""
    srv = km.serve(
        "tiny",
        backend="transformers",
        name="reliability-narrow",
        stream_interval_ms=0,
        max_batch_size=1,
        max_waiting=1,
        max_body_mb=1,
        default_max_tokens=5,
    )
    yield srv
    srv.stop()


LONG = {"model": "tiny", "messages": HELLO, "max_tokens": 3000, "temperature": 0}


def _send_raw(server, body) -> socket.socket:
    """Send a chat request on a bare socket and read nothing: closing the socket is a client that left."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_S)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


def _wait_for(condition, timeout=ANSWER_S):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition()


def test_oversized_bodies_are_413s_with_or_without_a_length(narrow):
    big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * (2 * 2**20)}]}
    declared = _post(narrow, big)
    assert declared.status_code == 413 and _error(declared)["code"] == "request_too_large"

    def chunks():
        data = json.dumps(big).encode()
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    chunked = _post(narrow, content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "larger than 1 MiB" in _error(chunked)["message"]
    _healthy(narrow)


def test_a_prompt_far_beyond_the_context_is_refused_before_tokenising(narrow, monkeypatch):
    calls = []
    monkeypatch.setattr(narrow.engine, "encode", lambda text: calls.append(len(text)) or [1] * len(text))
    body = {"model": "tiny", "prompt": "y" * 900_000, "max_tokens": 1}
    response = httpx.post(narrow.url + "/completions", json=body, timeout=ANSWER_S)
    assert response.status_code == 400 and _error(response)["code"] == "context_length_exceeded"
    assert calls == []


def test_images_per_request_are_capped(narrow):
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = {"model": "tiny", "messages": [{"role": "user", "content": [part] * 9}]}
    response = _post(narrow, body)
    assert response.status_code == 400 and "at most 8 images" in _error(response)["message"]


def test_chat_without_max_tokens_gets_the_bounded_default(narrow):
    reply = _post(narrow, {"model": "tiny", "messages": HELLO, "temperature": 0})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] <= 5


def test_a_full_queue_answers_503_with_retry_after_and_recovers(narrow):
    engine = narrow.engine
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = _send_raw(narrow, {**LONG, "stream": True})
        _wait_for(lambda: _live(engine) == 1)
        waiting = pool.submit(_post, narrow, {"model": "tiny", "messages": HELLO, "max_tokens": 2})
        _wait_for(lambda: engine.pending() == 1)
        refused = _post(narrow, {"model": "tiny", "messages": HELLO, "max_tokens": 2})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert _error(refused)["code"] == "server_busy"
        running.close()  # the stream's client leaves: its request is cancelled and the waiting one runs
        assert waiting.result().status_code == 200
    _healthy(narrow)


def test_a_non_streaming_request_whose_client_left_is_cancelled(narrow):
    engine = narrow.engine
    sock = _send_raw(narrow, LONG)
    _wait_for(lambda: _live(engine) == 1)
    sock.close()
    _wait_for(lambda: _live(engine) == 0 and engine.pending() == 0)
    assert not [r for r in engine.records() if r.completion_tokens >= 1000]  # cancelled, never ran to the end
    _healthy(narrow)


def test_a_request_past_its_timeout_gets_a_504(tiny_model):
    srv = km.serve("tiny", backend="transformers", name="reliability-timeout", request_timeout_s=1.5)
    try:
        response = _post(srv, LONG)
        assert response.status_code == 504 and _error(response)["code"] == "timeout"
        status, events, done = _stream(srv, {**LONG, "stream": True})
        assert status == 200 and done and events[-1]["error"]["code"] == "timeout"
        _wait_for(lambda: _live(srv.engine) == 0)
        _healthy(srv)
    finally:
        srv.stop()


def test_a_keyless_server_answers_only_this_machines_host_names(narrow):
    url = narrow.url + "/models"
    for host in (f"127.0.0.1:{narrow.port}", f"localhost:{narrow.port}", "[::1]", "LOCALHOST"):
        assert httpx.get(url, headers={"Host": host}, timeout=30).status_code == 200, host
    for host in ("evil.example", f"evil.example:{narrow.port}", "127.0.0.1.evil.example", "localhost.evil"):
        response = httpx.get(url, headers={"Host": host}, timeout=30)
        assert response.status_code == 403 and _error(response)["code"] == "host_not_allowed", host
