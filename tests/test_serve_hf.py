"""The transformers engine behind our OpenAI-compatible server, checked with the official ``openai`` client."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time

import httpx
import openai
import pytest
from serve_support import make_lora_adapter, reference_reply

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.errors import SwiftConfigError, SwiftModelError, SwiftServeError, SwiftUsageError
from kernel_magics.jobs import live_jobs

HELLO = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_lora_adapter(tiny_model, tmp_path_factory.mktemp("lora") / "tuned", seed=1)


@pytest.fixture(scope="module")
def llama_adapter(tiny_llama, tmp_path_factory):
    return make_lora_adapter(tiny_llama, tmp_path_factory.mktemp("lora-llama") / "other", seed=2)


@pytest.fixture(scope="module")
def server(tiny_model, adapter):
    srv = km.serve("tiny", adapters={"tuned": adapter}, backend="transformers", name="hf-test")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(max_retries=0, timeout=60)


def _chat(client, model="tiny", stream=False, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 24)
    if not stream:
        return client.chat.completions.create(model=model, messages=kwargs.pop("messages", HELLO), **kwargs)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=kwargs.pop("messages", HELLO),
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage is not None]
    return text, finish, usage, chunks


def test_models_list_and_health(server, client):
    assert server.models == ["tiny", "tuned"]
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    assert [m.id for m in client.models.list().data] == ["tiny", "tuned"]
    assert httpx.get(server.base_url + "/health").json() == {"status": "ok"}
    assert server.status == "running" and server.backend == "transformers"


def test_chat_matches_plain_transformers_and_stream_matches(tiny_model, adapter, client):
    reply = _chat(client)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].message.content == reference_reply(tiny_model, HELLO, 24)

    text, finish, usage, chunks = _chat(client, stream=True)
    assert text == reply.choices[0].message.content
    assert finish == [reply.choices[0].finish_reason]
    assert usage[0].completion_tokens == reply.usage.completion_tokens
    assert chunks[0].choices[0].delta.role == "assistant"

    tuned = _chat(client, model="tuned")
    assert tuned.choices[0].message.content == reference_reply(tiny_model, HELLO, 24, adapter_dir=adapter)
    assert tuned.choices[0].message.content != reply.choices[0].message.content
    tuned_text, *_ = _chat(client, model="tuned", stream=True)
    assert tuned_text == tuned.choices[0].message.content


def test_completions_and_sampling_controls(client):
    done = client.completions.create(model="tiny", prompt="The quick brown fox", temperature=0, max_tokens=12)
    assert done.object == "text_completion" and done.usage.completion_tokens == 12
    assert done.choices[0].finish_reason == "length"
    pieces = client.completions.create(
        model="tuned", prompt="The quick brown fox", temperature=0, max_tokens=12, stream=True
    )
    streamed = "".join(c.choices[0].text for c in pieces if c.choices)
    tuned = client.completions.create(model="tuned", prompt="The quick brown fox", temperature=0, max_tokens=12)
    assert streamed == tuned.choices[0].text and tuned.choices[0].text != done.choices[0].text

    # seed makes sampling repeatable; another seed gives another text
    a = _chat(client, temperature=1.0, seed=7, max_tokens=16).choices[0].message.content
    b = _chat(client, temperature=1.0, seed=7, max_tokens=16).choices[0].message.content
    c = _chat(client, temperature=1.0, seed=8, max_tokens=16).choices[0].message.content
    assert a == b and a != c
    # stop strings cut the reply before them
    full = _chat(client, model="tuned", temperature=1.0, seed=3, max_tokens=20).choices[0].message.content
    stop = full[5:7]
    cut = _chat(client, model="tuned", temperature=1.0, seed=3, max_tokens=20, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop)]
    # top_p tiny -> greedy
    greedy = _chat(client, temperature=0).choices[0].message.content
    assert _chat(client, temperature=1.0, top_p=1e-6, seed=5).choices[0].message.content == greedy


@pytest.mark.parametrize(
    "body, status, code_or_param",
    [
        ({"model": "nope", "messages": HELLO}, 404, "model_not_found"),
        ({"model": "tiny", "messages": HELLO, "max_tokens": 0}, 400, "max_tokens"),
        ({"model": "tiny", "messages": HELLO, "max_tokens": -3}, 400, "max_tokens"),
        ({"model": "tiny", "messages": HELLO, "max_tokens": 10**6}, 400, "context_length_exceeded"),
        ({"model": "tiny", "messages": HELLO, "temperature": 3}, 400, "temperature"),
        ({"model": "tiny", "messages": HELLO, "n": 0}, 400, "n"),
        ({"model": "tiny", "messages": HELLO, "n": 17}, 400, "n"),
        ({"model": "tiny", "messages": HELLO, "response_format": {"type": "yaml"}}, 400, "response_format.type"),
        ({"model": "tiny", "messages": HELLO, "tool_choice": "required"}, 400, "tool_choice"),
        ({"model": "tiny", "messages": HELLO, "best_of": 2}, 400, "best_of"),
        ({"model": "tiny", "messages": []}, 400, "messages"),
        ({"model": "tiny"}, 400, "messages"),
        ({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
    ],
)
def test_bad_requests_get_openai_errors(server, body, status, code_or_param):
    response = httpx.post(server.url + "/chat/completions", json=body, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert code_or_param in (error["code"], error["param"])
    assert httpx.get(server.base_url + "/health").status_code == 200


def test_bad_json_and_client_errors(server, client):
    response = httpx.post(
        server.url + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        _chat(client, model="missing")
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.completions.create(model="tiny", prompt="hi " * 3000, max_tokens=2000)
    assert httpx.get(server.url + "/nowhere").json()["error"]["type"] == "not_found_error"
    assert _chat(client, max_tokens=3).usage.completion_tokens == 3  # still serving


def test_32_concurrent_streams_are_batched_and_not_mixed_up(server, client):
    def ask(i: int) -> tuple[str, int, str]:
        model = "tuned" if i % 2 else "tiny"
        text, finish, usage, _ = _chat(
            client, model=model, stream=True, temperature=1.0, seed=100 + i, max_tokens=8 + i % 9
        )
        return text, usage[0].completion_tokens, finish[0]

    before = len(server.stats())
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, range(32), timeout=300))
    alone = [ask(i) for i in (0, 1, 9, 30, 31)]
    for i, result in zip((0, 1, 9, 30, 31), alone, strict=True):
        assert together[i] == result, f"request {i} differs when run with 31 others"
    assert len({text for text, _, _ in together}) == 32  # every seed its own text: none mixed up
    for i, (_, n, finish) in enumerate(together):
        assert (n == 8 + i % 9) if finish == "length" else (finish == "stop" and n < 8 + i % 9)
    stats = server.stats().iloc[before:]
    assert len(stats) == 37
    assert stats["batch_size"].max() > 4, "concurrent requests were served one at a time"
    assert (stats["ttft_s"] > 0).all() and (stats["tokens_per_s"] > 0).all()
    print(
        f"\n32 concurrent streams: largest batch {stats['batch_size'].max()}, "
        f"median TTFT {stats['ttft_s'].median() * 1000:.0f} ms, median {stats['tokens_per_s'].median():.0f} tok/s/request"
    )


def test_stream_interval_sends_fast_tokens_as_fewer_chunks(tiny_model, client):
    """0 ms: a chunk per token; a long interval: the same text in fewer, larger chunks (first one at once)."""
    fast = km.serve("tiny", backend="transformers", name="per-token", stream_interval_ms=0)
    slow = km.serve("tiny", backend="transformers", name="coalesced", stream_interval_ms=1000)
    try:
        expected = _chat(client, max_tokens=40).choices[0].message.content
        counts, took = {}, {}
        for srv in (fast, slow):
            started = time.perf_counter()
            text, finish, usage, chunks = _chat(srv.client(max_retries=0), stream=True, max_tokens=40)
            took[srv.name] = time.perf_counter() - started
            assert text == expected and usage[0].completion_tokens == 40
            counts[srv.name] = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
        # per token: ~40 chunks (fewer only when the reader falls behind and waiting tokens merge)
        assert counts["per-token"] >= 10, counts
        # at most one wake-up a second, the first one at once
        assert counts["coalesced"] <= 2 + int(took["coalesced"]), (counts, took)
        assert counts["coalesced"] < counts["per-token"], counts
        with pytest.raises(SwiftConfigError, match="stream_interval_ms must be >= 0"):
            km.serve("tiny", backend="transformers", name="negative", stream_interval_ms=-1)
    finally:
        fast.stop()
        slow.stop()


def test_stats_and_metrics(server, client):
    _chat(client, model="tuned", max_tokens=5)
    frame = server.stats()
    assert {"ttft_s", "tokens_per_s", "e2e_s", "model", "completion_tokens"} <= set(frame.columns)
    last = frame.iloc[-1]
    assert last["model"] == "tuned" and last["completion_tokens"] == 5
    text = server.metrics()
    count = sum(frame["model"] == "tuned")
    assert f'km_requests_total{{model="tuned"}} {count}' in text
    assert 'km_time_to_first_token_seconds_count{model="tiny"}' in text


def test_api_key_required_on_every_request(tiny_model):
    srv = km.serve("tiny", backend="transformers", api_key="s3cret", name="keyed")
    try:
        assert httpx.get(srv.url + "/models").status_code == 401
        bad = httpx.get(srv.url + "/models", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url, api_key="wrong", max_retries=0).models.list()
        assert [m.id for m in srv.client().models.list().data] == ["tiny"]
    finally:
        srv.stop()


def test_stop_frees_the_port_and_threads(tiny_model):
    srv = km.serve("tiny", backend="transformers", name="short-lived")
    port = srv.port
    assert any(t.name == "km-server-short-lived" for t in threading.enumerate())
    srv.stop()
    assert srv.status == "stopped" and srv not in live_jobs()
    with socket.socket() as sock:  # the port is free again: a new server can listen there
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    assert not any(t.name.startswith(("km-server-short-lived", "km-hf-engine-short")) for t in threading.enumerate())
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health")


def test_busy_port(tiny_model, monkeypatch, capsys):
    from kernel_magics.config import settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(SwiftServeError, match=f"port {busy} on 127.0.0.1 is busy"):
            km.serve("tiny", backend="transformers", port=busy, name="busy")
        monkeypatch.setattr(settings, "port", busy)
        srv = km.serve("tiny", backend="transformers", name="next-port")
        try:
            assert srv.port > busy
            assert f"port {busy} is busy; using {srv.port}" in capsys.readouterr().out
        finally:
            srv.stop()


def test_bad_input_is_one_line(tiny_model, llama_adapter, server, monkeypatch, tmp_path):
    with pytest.raises(
        SwiftModelError, match=r"trained on .*tiny-llama \(model_type=llama\) but the served model has model_type=qwen2"
    ):
        km.serve("tiny", adapters={"other": llama_adapter}, backend="transformers", name="mismatch")
    with pytest.raises(SwiftModelError, match="has no adapter_config.json"):
        km.serve("tiny", adapters={"x": tmp_path}, backend="transformers", name="noadapter")
    with pytest.raises(SwiftModelError, match="neither a local folder nor a hub id"):
        km.serve("no such model!", backend="transformers")
    with pytest.raises(SwiftModelError, match="HF_HUB_OFFLINE"):
        km.serve("someone/not-downloaded", backend="transformers")
    with pytest.raises(SwiftServeError, match="a server named 'hf-test' is already running"):
        km.serve("tiny", backend="transformers", name="hf-test")
    with pytest.raises(SwiftConfigError, match="pass --api-key"):
        km.serve("tiny", backend="transformers", host="0.0.0.0", name="open")
    with pytest.raises(SwiftConfigError, match="backend 'tensorrt' is not one of"):
        km.serve("tiny", backend="tensorrt")

    from kernel_magics.serve.engines import vllm as vllm_engine

    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    with pytest.raises(
        SwiftServeError, match=r"needs vLLM, which is not installed: pip install .*auto' would use transformers"
    ):
        km.serve("tiny", backend="vllm", name="novllm")
    from kernel_magics.device import select_device
    from kernel_magics.serve.api import choose_backend

    chosen, reason = choose_backend("auto", select_device("cpu"), tiny_model)
    assert chosen == "transformers" and "vLLM is not installed" in reason
    for srv in live_jobs("server"):
        assert srv.name == "hf-test"  # nothing half-started was left behind


def test_magic_line_and_stop(tiny_model, adapter, server):
    call = cli.parse(f"serve --model tiny --adapter tuned={adapter} --backend transformers --name from-line")
    srv = call.run()
    try:
        assert srv.models == ["tiny", "tuned"] and srv.status == "running"
        target = cli.parse("chat --compare base,tuned --temperature 0").run()
        assert target.url == srv.url and target.models == ["tiny", "tuned"]  # the latest server
    finally:
        assert cli.parse("stop from-line").run() == ["from-line"]
    assert srv.status == "stopped" and server.status == "running"
    with pytest.raises(SwiftServeError, match="no running server named 'form-line'"):
        cli.parse("stop form-line").run()


def test_chat_target_errors(server):
    from kernel_magics.serve import server as server_module

    with pytest.raises(SwiftUsageError, match="model 'tunde' is not served .*did you mean 'tuned'"):
        km_chat(url=server.url, model="tunde")
    with pytest.raises(SwiftUsageError, match="--compare needs two or more"):
        km_chat(url=server.url, compare=["tuned"])
    with pytest.raises(SwiftServeError, match="no OpenAI-compatible server answers"):
        km_chat(url="http://127.0.0.1:9/v1")
    saved = list(server_module._recent)
    server_module._recent.clear()
    try:
        with pytest.raises(SwiftServeError, match="no server is running in this kernel"):
            km_chat()
    finally:
        server_module._recent.extend(saved)


def km_chat(**kwargs):
    from kernel_magics.serve.api import chat

    return chat(**kwargs)


def test_cli_serves_until_interrupted(tiny_model, km_cache, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, KERNEL_MAGICS_CACHE_DIR=str(km_cache), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_magics", "serve", "--backend", "transformers", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.ConnectError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.3)
        reply = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none").completions.create(
            model="tiny", prompt="hi", max_tokens=4, temperature=0
        )
        assert reply.usage.completion_tokens == 4
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/v1" in out and "press Ctrl-C to stop" in out


@pytest.mark.gpu
def test_stop_frees_device_memory(tiny_model, adapter):
    import torch

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    srv = km.serve("tiny", adapters={"tuned": adapter}, backend="transformers", device="cuda", name="on-gpu")
    try:
        assert torch.cuda.memory_allocated() > before
        assert _chat(srv.client(), model="tuned", max_tokens=4).usage.completion_tokens == 4
    finally:
        srv.stop()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= before + (1 << 20)
