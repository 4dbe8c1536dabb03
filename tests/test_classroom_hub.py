"""The classroom service behind a real JupyterHub (dummy authenticator, three users, the service registered in
``c.JupyterHub.services`` and started by the hub on the tiny model), driven through the hub's proxy with
tokens the hub issued: publishing and ownership, a flood that leaves another student's requests their turn,
token budgets, and the training-slot queue with a student kernel that dies."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from classroom_support import REPO, proxy_binary, start_hub, stop_hub
from serve_support import make_lora_adapter, reference_reply

import kernel_magics as km
from kernel_magics.classroom.slot_client import request_slot
from kernel_magics.errors import SwiftServeError
from kernel_magics.serve.api import chat
from kernel_magics.serve.chat import stream_reply

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "Write a short poem about the sea."}]
CAPACITY, PER_USER = 4, 2
NO_EOS = {"0": -100, "2": -100}  # the tiny model's <|endoftext|> and <|im_end|>
SERVICE_ARGS = ["--max-batch-size", str(CAPACITY), "--per-user-concurrency", str(PER_USER), "--tokens-per-minute", "8000",
                "--adapters-per-student", "2", "--max-rank", "16", "--train-slots", "2", "--heartbeat-timeout-s", "3"]  # fmt: skip


def _proxy_or_skip() -> str:
    proxy = proxy_binary()
    if proxy is None:
        reason = "configurable-http-proxy is not installed (make chp: npm install into .venv/node_modules)"
        required = {n.strip() for n in os.environ.get("KM_REQUIRE", "").split(",")}
        if "jupyterhub" in required:
            pytest.fail(f"KM_REQUIRE names jupyterhub, which is missing: {reason}", pytrace=False)
        pytest.skip(reason)
    return proxy


@pytest.fixture(scope="module")
def hub(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (pip install 'kernel_magics[dev]')")
    running = start_hub(tmp_path_factory.mktemp("hub"), tiny_model, _proxy_or_skip(), SERVICE_ARGS)
    yield running
    stop_hub(running)


def _request(method: str, url: str, token: str | None, body: bytes | None = None) -> tuple[int, dict, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        request.add_header("Authorization", f"token {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), exc.headers


def _chat(hub, user: str, model: str, max_tokens: int, content: str | None = None, **extra: Any) -> tuple[int, dict, Any]:
    messages = [{"role": "user", "content": content}] if content else MESSAGES
    body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, **extra}).encode()
    return _request("POST", hub.classroom + "/v1/chat/completions", hub.tokens[user], body)


def _tokens(hub, user: str, model: str) -> list[list[int]]:
    """The bytes of each token of a greedy 8-token reply (random weights write partial UTF-8: text hides it)."""
    body = json.dumps({"model": model, "messages": MESSAGES, "max_tokens": 8, "temperature": 0, "logprobs": True}).encode()
    answer = _request("POST", hub.classroom + "/v1/chat/completions", hub.tokens[user], body)[1]
    return [entry["bytes"] for entry in answer["choices"][0]["logprobs"]["content"]]


def _models(hub, user: str) -> list[str]:
    return [m["id"] for m in _request("GET", hub.classroom + "/v1/models", hub.tokens[user])[1]["data"]]


def test_students_publish_own_their_adapters_and_chat_through_the_hub(hub, tiny_model, tmp_path):
    poems = {user: make_lora_adapter(tiny_model, tmp_path / user / "adapter", seed=i + 1) for i, user in enumerate(("alice", "bob"))}
    for user, adapter in poems.items():
        answer = km.publish(adapter.parent, name="poem", url=hub.classroom, token=hub.tokens[user])
        assert answer["id"] == f"{user}/poem" and answer["rank"] == 8
    base = _models(hub, "alice")[0]
    assert _models(hub, "alice") == [base, "alice/poem"]  # the "own" policy: only what she may chat with
    assert _models(hub, "carol") == [base, "alice/poem", "bob/poem"]  # a teacher chats with every adapter

    import openai  # a stock OpenAI client, the hub token as its key

    client = openai.OpenAI(base_url=hub.classroom + "/v1", api_key=hub.tokens["alice"])
    reply = client.chat.completions.create(model="alice/poem", messages=MESSAGES, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content == reference_reply(tiny_model, MESSAGES, 8, poems["alice"])
    target = chat(url=hub.classroom + "/v1", api_key=hub.tokens["alice"], compare="base,alice/poem", temperature=0, max_tokens=8)
    assert target.models == [base, "alice/poem"]  # %swift chat --compare base,alice/poem, streamed through the service
    assert "".join(stream_reply(target, "alice/poem", MESSAGES)) == reply.choices[0].message.content

    archive = (tmp_path / "alice.zip")
    import zipfile

    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            bundle.write(poems["bob"] / name, name)
    assert _request("PUT", hub.classroom + "/classroom/adapters/alice/poem", hub.tokens["bob"], archive.read_bytes())[0] == 403
    assert _request("DELETE", hub.classroom + "/classroom/adapters/alice/poem", hub.tokens["bob"])[0] == 403
    status, body, _ = _chat(hub, "bob", "alice/poem", 4)  # not his to see: unknown to him, like any other name
    assert status == 404 and body["error"]["message"].endswith(f"this server has: {base}, bob/poem"), body
    for token in ("not-a-hub-token", None):
        status, body, _ = _request("GET", hub.classroom + "/v1/models", token)
        assert status == 401 and "JupyterHub API token" in body["error"]["message"]

    with zipfile.ZipFile(archive, "w") as bundle:  # pickled weights: refused in one line, nothing changes
        bundle.writestr("adapter_config.json", (poems["bob"] / "adapter_config.json").read_text())
        bundle.writestr("adapter_model.bin", b"\x80\x04pickle")
    status, body, _ = _request("PUT", hub.classroom + "/classroom/adapters/bob/poem", hub.tokens["bob"], archive.read_bytes())
    assert status == 422 and "only safetensors" in body["error"]["message"] and "\n" not in body["error"]["message"]
    assert _models(hub, "carol") == [base, "alice/poem", "bob/poem"]
    assert _chat(hub, "alice", "alice/poem", 8)[1]["choices"][0]["message"]["content"] == reply.choices[0].message.content
    assert km.publish(poems["bob"], name="poem", url=hub.classroom, token=hub.tokens["alice"])["replaced"]  # her own: she may
    assert _tokens(hub, "alice", "alice/poem") == _tokens(hub, "bob", "bob/poem") != _tokens(hub, "alice", base)

    km.publish(poems["bob"], name="second", url=hub.classroom, token=hub.tokens["bob"])
    with pytest.raises(SwiftServeError, match="409: bob already has 2 adapters"):
        km.publish(poems["bob"], name="third", url=hub.classroom, token=hub.tokens["bob"])

    with pytest.raises(SwiftServeError, match="403: the class status is for teachers"):
        km.teacher(url=hub.classroom, token=hub.tokens["alice"])
    view = km.teacher(url=hub.classroom, token=hub.tokens["carol"])
    assert view.adapters() == ["alice/poem", "bob/poem", "bob/second"]
    view.unload("bob/second")  # the panel's Unload: a teacher may remove any student's adapter
    assert view.refresh().data["adapters"] == {"alice": ["poem"], "bob": ["poem"]}
    assert view.data["users"]["alice"]["requests_last_min"] == 5 and view.data["memory"]["rss_mb"] > 0
    assert km.unpublish("poem", url=hub.classroom, token=hub.tokens["bob"])["deleted"]
    assert _models(hub, "carol") == [base, "alice/poem"]


def test_a_flood_from_bob_leaves_alice_her_turn(hub):
    base = _models(hub, "alice")[0]
    solo = []
    for _ in range(5):
        started = time.perf_counter()
        assert _chat(hub, "alice", base, 4)[0] == 200
        solo.append(time.perf_counter() - started)
    _models(hub, "bob")  # the hub has vouched for bob's token: his flood goes straight to his line
    with ThreadPoolExecutor(32) as pool:
        # the end-of-text tokens barred: every one of bob's requests is 64 tokens long, wherever a random model would stop
        flood = [pool.submit(_chat, hub, "bob", base, 64, logit_bias=NO_EOS) for _ in range(32)]
        deadline = time.monotonic() + 180
        while _request("GET", hub.classroom + "/classroom/status", hub.tokens["carol"])[1]["users"].get("bob", {}).get("waiting", 0) < 4:
            assert time.monotonic() < deadline, "bob's flood never queued up"
            time.sleep(0.05)
        under_flood = []
        for _ in range(5):
            started = time.perf_counter()
            assert _chat(hub, "alice", base, 4)[0] == 200
            under_flood.append(time.perf_counter() - started)
        view = _request("GET", hub.classroom + "/classroom/status", hub.tokens["carol"])[1]["users"]
        assert view["bob"]["waiting"] > 0  # alice was served while bob still had requests in line
        results = [f.result() for f in flood]
    assert [(status, body["usage"]["completion_tokens"]) for status, body, _ in results] == [(200, 64)] * 32
    p99 = sorted(under_flood)[-1]  # 5 samples: the p99 is the slowest
    print(f"alice latency: solo median {statistics.median(solo) * 1000:.0f} ms; under bob's 32-request flood "
          f"median {statistics.median(under_flood) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    # at most bob's concurrency cap went to the engine between each of alice's requests and its turn,
    # whatever the machine's speed (in arrival order she would wait behind his whole line)
    assert view["alice"]["most_ahead"] <= PER_USER
    assert view["bob"]["inside"] <= PER_USER


def test_past_the_token_budget_a_user_gets_429_with_retry_after(hub):
    base = _models(hub, "carol")[0]
    bad = json.dumps({"model": base, "messages": MESSAGES, "max_tokens": 4, "logit_bias": {"999999": 5}}).encode()
    status, body, _ = _request("POST", hub.classroom + "/v1/chat/completions", hub.tokens["carol"], bad)
    assert status == 400 and "outside this model's vocabulary" in body["error"]["message"]  # the plain server's checks hold
    long_prompt = " ".join(["sea"] * 1500)
    for _ in range(12):
        status, body, headers = _chat(hub, "carol", base, 1, long_prompt)
        if status == 429:
            break
        assert status == 200
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
    assert "carol used" in body["error"]["message"] and "limit is 8000" in body["error"]["message"]
    assert _chat(hub, "alice", base, 2)[0] == 200  # alice's budget is her own


def test_training_slots_are_granted_in_order_and_a_dead_kernel_frees_its_slot(hub):
    kernel = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from kernel_magics.classroom.slot_client import request_slot; "
         "s = request_slot('alice run', url=sys.argv[1], token=sys.argv[2], heartbeat_s=0.5); "
         "print(s.state, flush=True); time.sleep(600)", hub.classroom, hub.tokens["alice"]],
        stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    held = []
    try:
        assert kernel.stdout.readline().strip() == b"granted"
        bob = request_slot("bob run", url=hub.classroom, token=hub.tokens["bob"], heartbeat_s=0.5)
        carol = request_slot("carol run", url=hub.classroom, token=hub.tokens["carol"], heartbeat_s=0.5)
        bob_again = request_slot("bob second run", url=hub.classroom, token=hub.tokens["bob"], heartbeat_s=0.5)
        held = [bob, carol, bob_again]
        assert bob.state == "granted" and (carol.position, bob_again.position) == (1, 2)
        assert carol.message.startswith("queued: 1st in line, about")
        kernel.kill()  # the student's kernel dies: no more heartbeats
        assert carol.wait(timeout=30), carol.message  # the first in line gets the freed slot
        assert bob_again.state == "queued" and bob_again.beat()["position"] == 1
        slots = _request("GET", hub.classroom + "/classroom/slots", hub.tokens["bob"])[1]
        assert [lease["label"] for lease in slots["held"]] == ["bob run", "carol run"]
        bob.release()
        assert bob_again.wait(timeout=30)
        assert len(_request("GET", hub.classroom + "/classroom/slots", hub.tokens["bob"])[1]["held"]) == 2
        km.teacher(url=hub.classroom, token=hub.tokens["carol"]).stop_run(bob_again.lease_id)  # the panel's Stop
        assert bob_again.beat()["message"] == "released: stopped by carol" and bob_again.ended.is_set()
    finally:
        kernel.kill()
        kernel.wait(10)
        for lease in held:
            lease.release()
