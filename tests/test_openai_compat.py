"""One request matrix against both engines, with the official ``openai`` client and LangChain's ``ChatOpenAI``.

Each engine's server starts once for the module (vLLM on CPU takes ~20-60 s). The tiny model is random,
so replies are compared between requests (stream vs whole, seed vs seed, one prompt vs a list), and
structured output / forced tool calls are checked by parsing them: the grammar guarantees their shape.
"""

from __future__ import annotations

import json
import os

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

import kernel_magics as km

HELLO = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ENGINES = [
    pytest.param("transformers", id="transformers"),
    pytest.param("vllm", id="vllm", marks=[pytest.mark.vllm, pytest.mark.slow]),
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning threads per process make steps far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Person(BaseModel):
    """A person (bounded fields, so even a random model's constrained reply ends)."""

    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tiny_model):
    from kernel_magics.config import settings

    first_port = settings.port
    settings.port = 20000 + (os.getpid() * 7) % 20000  # away from 8000, where other servers start looking
    try:
        srv = km.serve("tiny", backend=request.param, name=f"compat-{request.param}")
    finally:
        settings.port = first_port
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(max_retries=0, timeout=120)


def _chat(client, **kwargs):
    kwargs.setdefault("messages", HELLO)
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 12)
    return client.chat.completions.create(model="tiny", **kwargs)


def test_models_list_and_retrieve(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("missing")


def test_list_of_prompts_and_n(server, client):
    prompts = ["The quick brown fox", "Hello world"]
    both = client.completions.create(model="tiny", prompt=prompts, temperature=0, max_tokens=6)
    assert [c.index for c in both.choices] == [0, 1]
    for prompt, choice in zip(prompts, both.choices, strict=True):
        alone = client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=6)
        assert choice.text == alone.choices[0].text
    assert both.usage.completion_tokens == 12

    if server.backend == "vllm":
        with pytest.raises(openai.BadRequestError, match="n must be 1 when using greedy sampling"):
            _chat(client, n=2)
    else:
        greedy = _chat(client, n=2)
        assert [c.index for c in greedy.choices] == [0, 1]
        assert greedy.choices[0].message.content == greedy.choices[1].message.content
    sampled = _chat(client, n=3, temperature=1.0, seed=11, max_tokens=16, logprobs=True)
    assert [c.index for c in sampled.choices] == [0, 1, 2]
    assert len({c.message.content for c in sampled.choices}) >= 2, "n sampled choices should differ"
    assert sampled.usage.completion_tokens == sum(len(c.logprobs.content) for c in sampled.choices)


def test_chat_logprobs(client):
    reply = _chat(client, logprobs=True, top_logprobs=2, max_tokens=8)
    items = reply.choices[0].logprobs.content
    assert len(items) == reply.usage.completion_tokens == 8
    for item in items:
        assert item.logprob <= 0 and len(item.top_logprobs) == 2
        assert item.top_logprobs[0].logprob >= item.top_logprobs[1].logprob
        assert item.token == item.top_logprobs[0].token  # greedy: the chosen token is the most likely
        assert abs(item.logprob - item.top_logprobs[0].logprob) < 1e-3
    assert "".join(i.token for i in items) == reply.choices[0].message.content
    plain = _chat(client, max_tokens=8)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs(client):
    done = client.completions.create(model="tiny", prompt="Hello world", temperature=0, max_tokens=5, logprobs=2)
    lp = done.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert "".join(lp.tokens) == done.choices[0].text
    assert all(2 <= len(top) <= 3 for top in lp.top_logprobs)  # vLLM adds the sampled token when not in the top
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)


@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
def test_response_format(client, kind):
    if kind == "json_object":
        fmt = {"type": "json_object"}
    else:
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": Person.model_json_schema()}}
    reply = _chat(client, response_format=fmt, max_tokens=120)
    assert reply.choices[0].finish_reason == "stop"
    value = json.loads(reply.choices[0].message.content)
    assert isinstance(value, dict)
    if kind == "json_schema":
        Person.model_validate(value)


def test_stream_matches_whole_reply_with_usage(client):
    whole = _chat(client, max_tokens=16)
    chunks = list(_chat(client, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    streamed = client.completions.create(model="tiny", prompt="Hello", temperature=0, max_tokens=8, stream=True)
    done = client.completions.create(model="tiny", prompt="Hello", temperature=0, max_tokens=8)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == done.choices[0].text


def test_stop_seed_penalties_and_content_parts(client):
    a = _chat(client, temperature=1.0, seed=5, max_tokens=16).choices[0].message.content
    assert a == _chat(client, temperature=1.0, seed=5, max_tokens=16).choices[0].message.content
    assert a != _chat(client, temperature=1.0, seed=6, max_tokens=16).choices[0].message.content
    full = _chat(client, max_tokens=16).choices[0].message.content
    stop = full[4:6]
    cut = _chat(client, max_tokens=16, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == full[: full.index(stop)]
    plain = client.completions.create(model="tiny", prompt="a", temperature=0, max_tokens=8).choices[0].text
    penalised = client.completions.create(
        model="tiny", prompt="a", temperature=0, max_tokens=8, frequency_penalty=2.0, presence_penalty=1.0
    )
    assert penalised.choices[0].text != plain
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}],
        }
    ]
    assert _chat(client, messages=parts, max_tokens=16).choices[0].message.content == full


def _call_of(message):
    assert message.tool_calls, f"no tool call in {message}"
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    return json.loads(call.function.arguments)


def test_forced_tool_call_whole_streamed_and_next_turn(client):
    """The random model's forced call ends within its budget: no engine lets it write blanks without end."""
    choice = {"type": "function", "function": {"name": "get_weather"}}
    reply = _chat(client, tools=[WEATHER], tool_choice=choice, max_tokens=120)
    arguments = _call_of(reply.choices[0].message)
    assert isinstance(arguments["city"], str)
    assert reply.choices[0].finish_reason in ("tool_calls", "stop")  # vLLM ends named-tool replies with stop
    one_of_any = _chat(client, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_tokens=120)
    assert isinstance(_call_of(one_of_any.choices[0].message)["city"], str)
    assert one_of_any.choices[0].finish_reason in ("tool_calls", "stop")

    chunks = list(_chat(client, tools=[WEATHER], tool_choice=choice, max_tokens=120, stream=True))
    name, streamed_args = "", ""
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += (delta.function.name or "") if delta.function else ""
            streamed_args += (delta.function.arguments or "") if delta.function else ""
    assert name == "get_weather" and json.loads(streamed_args) == arguments

    call = reply.choices[0].message.tool_calls[0]
    turn = HELLO + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    answer = _chat(client, messages=turn, tools=[WEATHER], max_tokens=8)
    assert answer.usage.prompt_tokens > reply.usage.prompt_tokens  # the call and its result were rendered


def test_fields_an_engine_cannot_honour_get_a_400_naming_them(server, client):
    with pytest.raises(openai.BadRequestError, match="frobnicate"):
        _chat(client, extra_body={"frobnicate": 1})
    response = httpx.post(
        server.url + "/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2, "bogus_knob": True}
    )
    assert response.status_code == 400 and "bogus_knob" in response.json()["error"]["message"]
    if server.backend == "transformers":
        with pytest.raises(openai.BadRequestError, match="top_k"):
            _chat(client, extra_body={"top_k": 5})
    assert _chat(client, max_tokens=2).usage.completion_tokens == 2  # still serving


# -- LangChain ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_model(server):
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(
        base_url=server.url, api_key="none", model="tiny", temperature=0, max_tokens=24, max_retries=0, timeout=120
    )


def test_langchain_invoke_stream_batch(chat_model):
    message = chat_model.invoke("What is the capital of France?")
    assert isinstance(message.content, str) and message.usage_metadata["output_tokens"] > 0
    streamed = "".join(chunk.content for chunk in chat_model.stream("What is the capital of France?"))
    assert streamed == message.content
    batch = chat_model.batch(["What is the capital of France?", "Hello"])
    assert batch[0].content == message.content and len(batch) == 2


def test_langchain_structured_output_and_tools(chat_model):
    roomy = chat_model.model_copy(update={"max_tokens": 120})
    structured = roomy.with_structured_output(Person, method="json_schema")
    person = structured.invoke("Describe a person.")
    assert isinstance(person, Person)

    def get_weather(city: str) -> str:
        """Current weather of a city."""
        return "sunny"

    with_tools = roomy.bind_tools([get_weather], tool_choice="get_weather")
    message = with_tools.invoke("What is the weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    assert isinstance(message.tool_calls[0]["args"]["city"], str)
