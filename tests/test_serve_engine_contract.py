"""The serving-engine contract of CONTRIBUTING ("Add a serving engine"): an engine is one file plus one
registry entry, and the server reads the entry's declared policy instead of guessing.

The two engines below stand for such a file, written here and registered only by adding their entries to
``ENGINES`` (monkeypatch): no file of the package changes for them.

* ``contract-inproc``: an in-process engine (the transformers scheduler on a narrower set of request
  fields, its batch size from ``engine_args``), loopback only, reading no local media;
* ``contract-child``: an engine that brings its own OpenAI server and runs as a child process, the way an
  SGLang engine would (``python -m sglang.launch_server``); here the child is ``python -m kernel_magics
  serve`` on the transformers engine, and its stats come from the child's ``/metrics``.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import kernel_magics as km
from kernel_magics.errors import SwiftConfigError
from kernel_magics.serve import engines
from kernel_magics.serve.engines import ServingEngine
from kernel_magics.serve.protocol import SAMPLING_FIELDS

HELLO = [{"role": "user", "content": "Hello"}]


# -- the in-process engine's file ------------------------------------------------------------------------
INPROC_FIELDS = {  # no top_p, logit_bias, logprobs or tools: a request naming them gets a 400
    "chat": (SAMPLING_FIELDS - {"top_p"}) | {"messages"},
    "completions": (SAMPLING_FIELDS - {"top_p"}) | {"prompt"},
}


def inproc_unavailable(device: Any, model_dir: Path, auto: bool = False) -> str | None:
    return "the contract engine is never chosen by auto" if auto else None


def inproc_create(model_dir: Path, served_name: str, adapters: dict[str, str], options: Any) -> Any:
    from kernel_magics.serve.engines.hf import HFEngine

    batch = int(options.engine_args.get("batch", options.max_batch_size))
    return HFEngine(model_dir, served_name, adapters, device=options.device, max_batch_size=batch)


def inproc_honoured_fields(engine: Any) -> dict[str, set[str]]:
    return INPROC_FIELDS


INPROC = ServingEngine(
    name="contract-inproc",
    factory=f"{__name__}:inproc_create",
    unavailable=f"{__name__}:inproc_unavailable",
    honoured_fields=f"{__name__}:inproc_honoured_fields",
    loopback_only="the contract engine is a test fixture",
    takes_engine_args=True,
)


# -- the child-process engine's file ---------------------------------------------------------------------
class ChildServer:
    """A ServingProcess: the argv and environment of a server that speaks the OpenAI protocol itself."""

    name = "contract-child"
    health_path = "/health"
    startup_timeout_s = 120.0

    def __init__(self, model_dir: Path, served_name: str) -> None:
        self.model_dir, self.models, self.tool_call_parser = model_dir, [served_name], None

    def command(self, host: str, port: int) -> list[str]:
        return [sys.executable, "-m", "kernel_magics", "serve", "--model", str(self.model_dir), "--backend",
                "transformers", "--device", "cpu", "--host", host, "--port", str(port),
                "--served-model-name", self.models[0]]  # fmt: skip

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, "HF_HUB_OFFLINE": "1"}


def child_create(model_dir: Path, served_name: str, adapters: dict[str, str], options: Any) -> ChildServer:
    return ChildServer(model_dir, served_name)


def child_stats(metrics_text: str) -> Any:
    from kernel_magics.serve.metrics import parse_prometheus

    return parse_prometheus(metrics_text, prefix="km_requests_total")


CHILD = ServingEngine(
    name="contract-child",
    factory=f"{__name__}:child_create",
    unavailable=f"{__name__}:inproc_unavailable",
    stats=f"{__name__}:child_stats",
    in_process=False,
)


# -- the tests -------------------------------------------------------------------------------------------
@pytest.fixture
def registered(monkeypatch):
    """The two engines added to the registry, after the built-in ones (so auto never picks them)."""
    monkeypatch.setattr(engines, "ENGINES", (*engines.ENGINES, INPROC, CHILD))


def test_policy_comes_from_the_entry_before_anything_loads(registered, tiny_model, tmp_path):
    with pytest.raises(SwiftConfigError, match="the contract engine is a test fixture, so it is served on 127.0.0.1"):
        km.serve(tiny_model, backend="contract-inproc", host="0.0.0.0", api_key="k", wait=False)
    with pytest.raises(SwiftConfigError, match="contract-inproc engine reads no local media files") as info:
        km.serve(tiny_model, backend="contract-inproc", allowed_local_media_path=tmp_path, wait=False)
    assert str(info.value).endswith("works with vllm, transformers")  # the registry's engines that read media
    with pytest.raises(SwiftConfigError, match=r"take them \(vllm, contract-inproc\); the transformers engine got"):
        km.serve(tiny_model, backend="transformers", engine_args={"batch": 2}, wait=False)


def test_an_in_process_engine_registered_in_one_entry_serves_the_tiny_model(registered, tiny_model):
    import openai

    server = km.serve(tiny_model, backend="contract-inproc", device="cpu", engine_args={"batch": 2})
    try:
        assert server.backend == "contract-inproc" and server.engine.max_batch_size == 2
        client = server.client(max_retries=0)
        reply = client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=4, temperature=0)
        assert reply.model == server.model and reply.choices[0].message.content
        assert 1 <= reply.usage.completion_tokens <= 4
        with pytest.raises(openai.BadRequestError) as refused:  # top_p: honoured by transformers, not by it
            client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=2, top_p=0.5)
        assert refused.value.body["param"] == "top_p"
        stats = server.stats()  # an in-process engine: its own request records
        assert len(stats) == 1 and int(stats["completion_tokens"].iloc[0]) == reply.usage.completion_tokens
    finally:
        server.stop()


def _free_port() -> int:
    """A port the system hands out now (not 8000 and up, where servers of parallel tests start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_child_process_engine_registered_in_one_entry_serves_the_tiny_model(registered, tiny_model):
    server = km.serve(tiny_model, backend="contract-child", device="cpu", port=_free_port())
    try:
        assert server._process is not None and server._process.poll() is None  # its own process, not our app
        reply = server.client(max_retries=0).chat.completions.create(
            model=server.model, messages=HELLO, max_tokens=3, temperature=0
        )
        assert reply.model == server.model and 1 <= reply.usage.completion_tokens <= 3
        stats = server.stats()  # read from the child's /metrics by the entry's stats reader
        assert stats["value"].tolist() == [1.0]
    finally:
        server.stop()
    assert server._process.poll() is not None


def test_built_in_engines_take_local_media_through_their_factory(tiny_model, tmp_path):
    from kernel_magics.device import select_device
    from kernel_magics.serve.engines import EngineOptions, engine

    options = EngineOptions(select_device("cpu"), 4, None, None, False, {}, tmp_path)
    argv = engine("vllm").create(tiny_model, "tiny", {}, options).command("127.0.0.1", 8000)
    assert f"--allowed-local-media-path={tmp_path}" in argv  # vLLM's own flag, from EngineOptions
    plain = EngineOptions(select_device("cpu"), 4, None, None, False, {})
    assert not any("local-media" in a for a in engine("vllm").create(tiny_model, "tiny", {}, plain).command("h", 1))
