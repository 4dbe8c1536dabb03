"""What a server lets in besides its clients' requests, and how it starts, checked without a running server.

Which host names a server answers and how to name more; vLLM kept on loopback, without runtime LoRA
updates, fetching no image URLs unless domains are named; an image refused from its header before it
decodes to too many pixels; a port taken while the server starts, and a temp folder too deep for an
engine child's Unix sockets. The request-level tests (failures, limits, abandoned work) are in
``tests/test_serve_reliability.py``.
"""

from __future__ import annotations

import socket

import pytest

import kernel_magics as km


def test_a_port_taken_between_picking_and_binding_is_one_line(tiny_model, monkeypatch):
    from kernel_magics.errors import SwiftServeError
    from kernel_magics.serve import api

    taker = socket.socket()
    taker.bind(("127.0.0.1", 0))
    taker.listen(1)
    port = taker.getsockname()[1]
    monkeypatch.setattr(api, "pick_port", lambda host, asked, first: (port, None))  # free when it was looked at
    try:
        with pytest.raises(SwiftServeError, match=f"port {port} on 127.0.0.1 was taken before the server started"):
            km.serve("tiny", backend="transformers", name="reliability-port-race")
    finally:
        taker.close()


def test_an_engine_child_gets_a_temp_folder_its_unix_sockets_fit_in(monkeypatch, tmp_path):
    import tempfile

    from kernel_magics.serve.ports import short_temp_base

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("deep" * 20)))  # vLLM's socket path would pass 107 bytes
    assert short_temp_base() == "/tmp"
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert short_temp_base() is None  # a short TMPDIR is kept


def test_an_image_that_decodes_to_too_many_pixels_is_refused_from_its_header():
    import base64
    import io

    from PIL import Image

    from kernel_magics.serve.engines.hf_vlm import MAX_IMAGE_PIXELS, open_image_url

    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")  # a few KB that decode to 67 M pixels
    assert len(buffer.getvalue()) < 2**20
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(ValueError, match="pixels"):
        open_image_url(url, None)
    small = io.BytesIO()
    Image.new("RGB", (32, 16), "red").save(small, format="PNG")
    image = open_image_url("data:image/png;base64," + base64.b64encode(small.getvalue()).decode(), None)
    assert image.size == (32, 16)


def test_allowed_hosts_are_configurable():
    from fastapi.testclient import TestClient

    from kernel_magics.serve.app import create_app
    from kernel_magics.serve.limits import ServeLimits

    assert TestClient(create_app(None)).get("/health").status_code == 403  # TestClient sends Host: testserver
    named = create_app(None, limits=ServeLimits(allowed_hosts=("testserver",)))
    assert TestClient(named).get("/health").json() == {"status": "ok"}
    anyone = create_app(None, limits=ServeLimits(allowed_hosts=("*",)))
    assert TestClient(anyone).get("/health").status_code == 200
    keyed = create_app(None, api_key="k")  # a key replaces the Host check
    assert TestClient(keyed).get("/health").status_code == 200


def test_vllm_is_kept_on_loopback_and_never_gets_runtime_lora_updating(monkeypatch):
    from kernel_magics.errors import SwiftConfigError
    from kernel_magics.serve.api import check_exposure
    from kernel_magics.serve.engines.vllm import VLLMProcess

    check_exposure("vllm", "127.0.0.1")
    check_exposure("transformers", "0.0.0.0")
    with pytest.raises(SwiftConfigError, match="127.0.0.1 only") as info:
        check_exposure("vllm", "0.0.0.0")
    assert len(str(info.value)) <= 300
    engine = VLLMProcess.__new__(VLLMProcess)
    engine.api_key = "k"
    env = engine.environment({"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "PATH": "/usr/bin"})
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env and env["VLLM_API_KEY"] == "k"


def test_vllm_fetches_no_image_urls_unless_domains_are_named(tiny_model, monkeypatch):
    from kernel_magics.serve.engines import vllm

    monkeypatch.setattr(vllm, "_knows_media_domains", lambda: True)
    argv = vllm.VLLMProcess(tiny_model, "tiny").command("127.0.0.1", 8000)
    assert argv[argv.index("--allowed-media-domains") + 1] == vllm.NO_MEDIA_DOMAIN
    named = vllm.VLLMProcess(tiny_model, "tiny", engine_args={"allowed_media_domains": "images.example.com"})
    argv = named.command("127.0.0.1", 8000)
    assert "--allowed-media-domains" not in argv and "--allowed-media-domains=images.example.com" in argv
