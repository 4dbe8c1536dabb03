"""Serving a vision-language model: OpenAI ``image_url`` parts through the official ``openai`` client."""

from __future__ import annotations

import base64
import io
import socket
from pathlib import Path

import openai
import pytest

import kernel_magics as km


def _port() -> int:
    """A free port of our own (parallel test runs start their servers from 8000 up)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_vlm(km_cache: Path) -> Path:
    from kernel_magics.testing_vlm import make_tiny_vlm

    return make_tiny_vlm(km_cache / "models" / "tiny-qwen2-vl")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kernel_magics.testing_vlm import tiny_image_dataset

    return tiny_image_dataset(tmp_path_factory.mktemp("shapes"), n=3)


@pytest.fixture(scope="module")
def vlm_adapter(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the language model with random B matrices (so it changes the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(3)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=r".*language_model.*\.(q_proj|v_proj|up_proj|down_proj)",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    out = tmp_path_factory.mktemp("vlm-lora") / "shapes"
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(one_thread, tiny_vlm, vlm_adapter, shapes):
    srv = km.serve(
        str(tiny_vlm),
        adapters={"shapes": vlm_adapter},
        backend="auto",
        name="vlm-test",
        port=_port(),
        allowed_local_media_path=str(shapes),
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(max_retries=0, timeout=60)


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _messages(url: str, question: str = "What is in the picture?") -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}],
        }
    ]


def _reference(model_dir: Path, image: Path, question: str, adapter: Path | None = None) -> tuple[str, int]:
    """Greedy answer and prompt length with plain transformers + the model's processor (no server)."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from kernel_magics.data.processor import load_processor

    processor = load_processor(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.open(image).convert("RGB")], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    reply = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return reply, int(inputs["input_ids"].shape[1])


def test_image_request_matches_transformers_for_base_and_adapter(server, client, tiny_vlm, vlm_adapter, shapes):
    assert server.backend == "transformers" and server.models == [tiny_vlm.name, "shapes"]
    image = shapes / "images/000-red-circle.png"
    question = "What is in the picture?"
    answers = {}
    for name, adapter in ((tiny_vlm.name, None), ("shapes", vlm_adapter)):
        reply = client.chat.completions.create(
            model=name, messages=_messages(_data_url(image), question), temperature=0, max_tokens=12
        )
        expected, prompt_tokens = _reference(tiny_vlm, image, question, adapter)
        assert reply.choices[0].message.content == expected
        assert reply.usage.prompt_tokens == prompt_tokens  # image tokens included
        answers[name] = expected
    assert answers[tiny_vlm.name] != answers["shapes"]
    text_only = client.chat.completions.create(
        model=tiny_vlm.name, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=4
    )
    assert text_only.usage.prompt_tokens < reply.usage.prompt_tokens  # the image costs tokens


def test_streamed_image_answer_equals_the_full_one(client, tiny_vlm, shapes):
    messages = _messages(_data_url(shapes / "images/001-red-square.png"))
    full = client.chat.completions.create(model="shapes", messages=messages, temperature=0, max_tokens=12)
    chunks = list(
        client.chat.completions.create(
            model="shapes",
            messages=messages,
            temperature=0,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [full.usage.completion_tokens]


def test_local_paths_only_inside_the_allowed_folder(client, tiny_vlm, shapes, tmp_path):
    image = shapes / "images/002-red-triangle.png"
    by_path = client.chat.completions.create(
        model=tiny_vlm.name, messages=_messages(str(image)), temperature=0, max_tokens=8
    )
    by_data = client.chat.completions.create(
        model=tiny_vlm.name, messages=_messages(_data_url(image)), temperature=0, max_tokens=8
    )
    assert by_path.choices[0].message.content == by_data.choices[0].message.content
    outside = tmp_path / "secret.png"
    outside.write_bytes(image.read_bytes())
    bad = {
        str(outside): "is outside the allowed folder",
        "https://example.com/cat.png": "does not fetch images from the network",
        "data:image/png;base64,aGVsbG8=": "cannot be read as an image",
    }
    for url, message in bad.items():
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=tiny_vlm.name, messages=_messages(url), max_tokens=4)
        assert message in info.value.body["message"]


def test_text_model_rejects_image_parts(tiny_model, shapes):
    srv = km.serve("tiny", backend="transformers", name="text-only", port=_port())
    try:
        with pytest.raises(openai.BadRequestError) as info:
            srv.client(max_retries=0).chat.completions.create(
                model="tiny", messages=_messages(_data_url(shapes / "images/000-red-circle.png")), max_tokens=4
            )
        assert "content parts of type 'image_url' are not supported by this model" in info.value.body["message"]
    finally:
        srv.stop()


def test_local_paths_are_off_by_default(one_thread, tiny_vlm, shapes):
    from PIL import Image

    srv = km.serve(str(tiny_vlm), backend="transformers", name="vlm-no-paths", port=_port())
    try:
        client = srv.client(max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=tiny_vlm.name, messages=_messages(str(shapes / "images/000-red-circle.png")), max_tokens=4
            )
        assert "local image paths are off on this server" in info.value.body["message"]
        buffer = io.BytesIO()
        Image.new("RGB", (300, 200), (10, 200, 30)).save(buffer, format="JPEG")
        url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
        reply = client.chat.completions.create(model=tiny_vlm.name, messages=_messages(url), max_tokens=4)
        assert reply.usage.prompt_tokens > 40  # a larger image: more merged patches (300x200 -> 28 tokens)
    finally:
        srv.stop()
