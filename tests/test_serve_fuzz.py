"""Property-based fuzzing of the OpenAI endpoints: whatever JSON and headers a client sends, the server
answers (never a hang) and never with a 5xx; after the fuzzing it still serves."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernel_magics as km

ANSWER_S = 60  # no answer within this long is a hang

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = km.serve("tiny", backend="transformers", name="fuzz", stream_interval_ms=0, default_max_tokens=8)
    yield srv
    srv.stop()


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "wizard", ""])
parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=30), anything)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": anything}),
    st.dictionaries(st.text(max_size=8), anything, max_size=3),
)
content = st.one_of(st.text(max_size=60), st.lists(parts, max_size=3), anything)
message = st.one_of(st.fixed_dictionaries({"role": roles, "content": content}), anything)
small_or_odd = st.one_of(st.integers(min_value=-3, max_value=8), anything)
sampling = {
    "max_tokens": small_or_odd,
    "max_completion_tokens": small_or_odd,
    "temperature": st.one_of(st.floats(min_value=-1, max_value=3), anything),
    "top_p": st.one_of(st.floats(min_value=-1, max_value=2), anything),
    "seed": st.one_of(st.integers(min_value=-(2**65), max_value=2**65), anything),
    "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=300), max_size=6), anything),
    "n": st.one_of(st.integers(min_value=-1, max_value=3), anything),
    "stream": st.one_of(st.booleans(), anything),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), anything),
    "echo": anything,
}
model = st.one_of(st.just("tiny"), st.text(max_size=10), anything)
chat_body = st.fixed_dictionaries(
    {"model": model, "messages": st.one_of(st.lists(message, min_size=1, max_size=3), anything)},
    optional=sampling,
)
completion_body = st.fixed_dictionaries(
    {"model": model, "prompt": st.one_of(st.text(max_size=60), st.lists(st.text(max_size=20), max_size=2), anything)},
    optional=sampling,
)
bodies = st.one_of(
    st.tuples(st.just("/chat/completions"), chat_body),
    st.tuples(st.just("/completions"), completion_body),
    st.tuples(st.sampled_from(["/chat/completions", "/completions", "/models"]), anything),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
        "authorization": st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
        "accept": st.sampled_from(["*/*", "text/event-stream", "application/json"]),
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=bodies, extra_headers=headers, raw=st.booleans())
def test_no_request_gets_a_5xx_or_hangs(server, request, extra_headers, raw):
    path, body = request
    data = json.dumps(body).encode() if not raw else json.dumps(body)[:-1].encode()  # raw: cut-off JSON
    with httpx.Client(timeout=ANSWER_S) as client:
        response = client.post(server.url + path, content=data, headers=extra_headers)
        text = response.text
    assert response.status_code < 500, (response.status_code, text[:300])
    if response.status_code >= 400:
        error = json.loads(text)["error"]
        assert set(error) == {"message", "type", "param", "code"} and len(error["message"]) <= 300
    elif "data: " in text:
        assert text.rstrip().endswith("data: [DONE]")


def test_still_serving_after_the_fuzzing(server):
    reply = httpx.post(
        server.url + "/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        timeout=ANSWER_S,
    )
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3
