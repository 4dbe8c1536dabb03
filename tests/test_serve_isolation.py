"""One request's bad input never reaches the others (transformers engine, tiny model).

Per-request inputs (logit_bias, JSON schemas, how many choices) are refused with a 400 naming the field
before the request joins a batch; a request that still fails inside a batched step gets the error alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import httpx
import pytest
from serve_support import finish_reasons

import kernel_magics as km
from kernel_magics.serve.engines.base import SamplingParams
from kernel_magics.serve.engines.hf_batch import GenerationRequest
from kernel_magics.serve.limits import ServeLimits, check_queue
from kernel_magics.serve.protocol import APIError

HELLO = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER_S = 60
POISON_BIASES = ({"999999": 1}, {"5": 1e308}, {"-5": 100}, {"5": -101}, {"x": 1})


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = km.serve("tiny", backend="transformers", name="isolation", max_waiting=8, max_choices=6)
    yield srv
    srv.stop()


def _chat(server, **fields):
    body = {"model": "tiny", "messages": HELLO, "max_tokens": 24, "temperature": 0.9, "seed": 1, **fields}
    return httpx.post(server.url + "/chat/completions", json=body, timeout=ANSWER_S)


def _error(response, status=400):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and len(error["message"]) <= 300
    return error


@pytest.mark.slow
def test_poisoned_logit_biases_are_400s_and_three_requests_beside_them_finish(server):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ordinary = [pool.submit(_chat, server) for _ in range(3)]
        poisoned = [pool.submit(_chat, server, logit_bias=bias) for bias in POISON_BIASES]
        replies = [f.result() for f in ordinary]
        refusals = [_error(f.result()) for f in poisoned]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert all(r.json()["usage"]["completion_tokens"] > 0 for r in replies)
    assert [e["param"] for e in refusals] == ["logit_bias"] * len(POISON_BIASES)
    assert "vocabulary" in refusals[0]["message"] and "between -100 and 100" in refusals[1]["message"]


def test_a_bias_within_range_still_steers_the_reply(server):
    token = server.engine.encode(" Paris")[0]
    reply = _chat(server, logit_bias={str(token): 100}, max_tokens=3)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == server.engine.tokenizer.decode([token] * 3)


@pytest.mark.parametrize("bias", [{999999: 1.0}, {5: 1e308}], ids=["beyond-vocab", "1e308"])
def test_a_request_failing_inside_the_batch_fails_alone(server, bias):
    """An engine caller bypassing the protocol checks: only the poisoned row gets the error."""
    engine = server.engine
    prompt = engine.chat_prompt(HELLO)

    async def run() -> list:
        loop = asyncio.get_running_loop()
        handles = [
            GenerationRequest(f"r{i}", "tiny", prompt, SamplingParams(max_tokens=8, seed=i), loop) for i in range(4)
        ]
        handles[2].logit_bias = bias
        for handle in handles:
            engine.submit(handle)
        return await finish_reasons(handles, ANSWER_S)

    first, second, poisoned, last = asyncio.run(run())
    assert (first, second, last) == ("length", "length", "length")
    assert isinstance(poisoned, RuntimeError) and "generation failed" in str(poisoned)


def test_choices_are_counted_per_request_and_in_the_queue(server):
    """prompts x n is what a request asks for: capped per request (400) and counted in the queue (503)."""
    prompts = {"model": "tiny", "prompt": ["a b c"] * 100, "n": 2, "max_tokens": 2}
    error = _error(httpx.post(server.url + "/completions", json=prompts, timeout=ANSWER_S))
    assert error["param"] == "prompt" and "200 choices" in error["message"] and error["code"] == "too_many_choices"
    assert _error(_chat(server, n=7))["param"] == "n"
    fits = httpx.post(server.url + "/completions", json={**prompts, "prompt": ["a b c"] * 3}, timeout=ANSWER_S)
    assert fits.status_code == 200 and len(fits.json()["choices"]) == 6

    class Busy:  # five choices already waiting in an engine that takes eight
        def pending(self) -> int:
            return 5

    limits = ServeLimits(max_waiting=8, max_choices=6)
    check_queue(Busy(), limits, 3)
    with pytest.raises(APIError) as busy:
        check_queue(Busy(), limits, 4)
    assert busy.value.status == 503 and busy.value.headers["Retry-After"] == "1"


def test_a_schema_the_grammar_cannot_enforce_is_a_400_naming_the_keyword(server):
    both = {"allOf": [{"type": "string"}, {"type": "integer"}]}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": both}}
    error = _error(_chat(server, response_format=response_format))
    assert error["param"] == "response_format" and "'allOf'" in error["message"]
    invalid = {"type": "objekt", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "weather", "parameters": invalid}}]
    error = _error(_chat(server, tools=tools, tool_choice="auto"))
    assert error["param"] == "tools" and "'type'" in error["message"] and error["code"] == "invalid_schema"
    nested = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    tools[0]["function"]["parameters"] = nested
    error = _error(_chat(server, tools=tools, tool_choice="auto"))
    assert "'uniqueItems'" in error["message"] and "#/properties/tags" in error["message"]
    city = {"type": "object", "properties": {"not": {"type": "string"}}, "required": ["not"]}  # a property "not"
    response_format["json_schema"]["schema"] = city
    reply = _chat(server, response_format=response_format, temperature=0, max_tokens=40)
    assert reply.status_code == 200
    content = reply.json()["choices"][0]["message"]["content"]
    if reply.json()["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(content)["not"], str)


# Each keyword refused as unenforceable, with a schema using it and a value breaking it that
# xgrammar's grammar for that schema still accepts (asked of xgrammar itself).
IGNORED_BY_XGRAMMAR = {
    "allOf": ({"allOf": [{"type": "string"}, {"type": "integer"}]}, 5),
    "oneOf": ({"oneOf": [{"type": "integer", "minimum": 0}, {"type": "integer", "maximum": 5}]}, 3),
    "not": ({"type": "integer", "not": {"const": 3}}, 3),
    "if": ({"type": "integer", "if": {"minimum": 0}, "then": {"maximum": 5}}, 9),
    "contains": ({"type": "array", "items": {"type": "integer"}, "contains": {"const": 7}}, [1]),
    "uniqueItems": ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, [1, 1]),
    "dependentRequired": (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "dependentRequired": {"a": ["b"]}},
        {"a": 1},
    ),
    "dependencies": (
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "dependencies": {"a": ["b"]},
        },
        {"a": 1},
    ),
    "minLength/maxLength": ({"type": "string", "pattern": "^a+$", "maxLength": 2}, "aaaa"),
}


@pytest.mark.parametrize("keyword", sorted(IGNORED_BY_XGRAMMAR))
def test_each_refused_keyword_is_one_xgrammar_ignores(keyword):
    import jsonschema
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string

    from kernel_magics.serve.request_checks import check_schema

    schema, breaking = IGNORED_BY_XGRAMMAR[keyword]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(breaking, schema)  # the value does break the schema
    grammar = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    assert _is_grammar_accept_string(grammar, json.dumps(breaking))  # xgrammar lets it through
    with pytest.raises(APIError) as refused:
        check_schema(schema, "response_format")
    assert f"'{keyword}'" in refused.value.message


def test_vllm_engine_args_cannot_move_the_bind_address(tiny_model):
    from kernel_magics.errors import SwiftConfigError
    from kernel_magics.serve.engines.vllm import VLLMProcess

    for key in ("host", "--host", "--host=0.0.0.0", "HOST", "hos", "port", "--port", "uds", "config"):
        with pytest.raises(SwiftConfigError) as refused:
            VLLMProcess(tiny_model, "tiny", engine_args={key: "0.0.0.0"})
        assert len(str(refused.value)) <= 300 and "\n" not in str(refused.value)
    argv = VLLMProcess(tiny_model, "tiny", engine_args={"seed": "--host=0.0.0.0"}).command("127.0.0.1", 8000)
    assert "--seed=--host=0.0.0.0" in argv and "--host=0.0.0.0" not in argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv.count("--host") == 1
