"""Tool calling, trained: rows with ``tools`` and assistant ``tool_calls`` are checked, rendered by the chat
template with the loss on the call, and a fine-tuned tiny model's calls reach the ``openai`` client parsed."""

from __future__ import annotations

import json
import os

import pytest

import kernel_magics as km
from kernel_magics.data.formats import RowError, convert_row
from kernel_magics.errors import SwiftDataError

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CITIES = ["Paris", "Oslo", "Rome", "Lima", "Tokyo", "Cairo", "Berlin", "Madrid"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning threads per process make steps far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _row(city: str) -> dict:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
    return {
        "messages": [
            {"role": "user", "content": f"What is the weather in {city}?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ],
        "tools": [WEATHER],
    }


def test_openai_and_sharegpt_tool_rows_are_checked_and_normalised():
    row = convert_row("messages", _row("Paris"))
    call = row["messages"][1]["tool_calls"][0]
    assert call == {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert json.loads(row["tools"]) == [WEATHER]
    with_result = _row("Oslo")
    with_result["messages"] += [{"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]
    assert [m["role"] for m in convert_row("messages", with_result)["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]

    sharegpt = {
        "conversations": [
            {"from": "human", "value": "Weather in Rome?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Rome"}}'},
            {"from": "observation", "value": "rainy"},
            {"from": "gpt", "value": "It rains in Rome."},
        ],
        "tools": json.dumps([WEATHER["function"]]),
    }
    converted = convert_row("sharegpt", sharegpt)
    assert converted["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Rome"}'
    assert converted["messages"][2] == {"role": "tool", "content": "rainy"}
    assert json.loads(converted["tools"])[0]["function"]["name"] == "get_weather"

    bad = _row("Lima")
    bad["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{city: Lima"
    with pytest.raises(RowError, match=r"messages\[1\].tool_calls\[0\].function.arguments: is not valid JSON"):
        convert_row("messages", bad)
    no_tools = _row("Lima")
    del no_tools["tools"]
    with pytest.raises(RowError, match="tools: is missing: the assistant calls tools"):
        convert_row("messages", no_tools)
    with pytest.raises(RowError, match=r"conversations\[1\].value: must be"):
        convert_row(
            "sharegpt", {"conversations": [{"from": "human", "value": "x"}, {"from": "function_call", "value": "nope"}]}
        )


def test_loss_covers_the_tool_call_tokens(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    row = convert_row("messages", _row("Paris"))
    out = tokenizer.apply_chat_template(
        row["messages"], tools=json.loads(row["tools"]), return_dict=True, return_assistant_tokens_mask=True
    )
    learned = tokenizer.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m])
    assert learned == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'


def test_fine_tuned_tool_calls_reach_openai_and_langchain(tiny_model, tmp_path, monkeypatch):
    """Fine-tune on rows that always call get_weather(city=...), serve the result, call it with tools."""
    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(_row(city)) + "\n" for city in CITIES * 4))
    run = km.sft(
        str(tiny_model),
        str(data),
        method="full",
        lr=3e-3,
        max_steps=60,
        batch_size=8,
        logging_steps=5,
        save_steps=1000,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        output_dir=str(tmp_path / "run"),
        verbose=False,
    )
    assert run.wait() == "finished", run
    losses = run.metrics["loss"].dropna().tolist()
    assert losses[-1] < losses[0] / 3, losses

    from kernel_magics.config import settings

    monkeypatch.setattr(settings, "port", 30000 + (os.getpid() * 3) % 10000)
    srv = km.serve(str(run.adapter_dir), backend="transformers", served_model_name="tools", name="tool-caller")
    try:
        client = srv.client(max_retries=0, timeout=120)
        reply = client.chat.completions.create(
            model="tools",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER],
            temperature=0,
            max_tokens=60,
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message.content
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments)["city"], str)

        langchain_openai = pytest.importorskip("langchain_openai")
        model = langchain_openai.ChatOpenAI(
            base_url=srv.url, api_key="none", model="tools", temperature=0, max_tokens=60, max_retries=0
        )
        message = model.bind_tools([WEATHER]).invoke("What is the weather in Oslo?")
        assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
        assert isinstance(message.tool_calls[0]["args"]["city"], str)

        from kernel_magics.serve.api import chat
        from kernel_magics.widgets.chat import ChatPanel, tool_call_lines

        panel = ChatPanel(chat(url=srv.url, model="tools", temperature=0, max_tokens=60), tools=[WEATHER])
        panel.send_prompt("What is the weather in Rome?", wait=True)
        turn = panel.turns[-1]
        assert turn["calls"]["tools"][0]["name"] == "get_weather"
        assert tool_call_lines(turn, "tools")[0].startswith("get_weather({")
        json.loads(turn["calls"]["tools"][0]["arguments"])
    finally:
        srv.stop()


def test_rows_with_tools_need_a_template_that_renders_them(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from kernel_magics.data.prepare import PreparedData, check_lengths

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    row = convert_row("messages", _row("Paris"))
    data = PreparedData([row], ["tools.jsonl line 1"], "messages", "messages", "tools.jsonl", 1)
    with pytest.raises(SwiftDataError, match="line 1: the chat template rejects it .*does not render tools"):
        check_lengths(data, tokenizer, 512)
