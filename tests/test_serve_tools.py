"""Tool calling and served names, without a server: parsing replies, choosing the format, vLLM's flags."""

from __future__ import annotations

import json

import pytest

import kernel_magics as km
from kernel_magics.serve.protocol import APIError
from kernel_magics.serve.tools import (
    choice_of_tools,
    may_start_call,
    parse_tool_calls,
    parser_for_template,
    template_messages,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_hermes_replies_become_tool_calls():
    text = 'Let me look.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    text += '\n<tool_call>{"name": "get_weather", "arguments": {"city": "巴黎"}}</tool_call>'
    content, calls = parse_tool_calls(text, "hermes")
    assert content == "Let me look."
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "巴黎"}]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert len({c["id"] for c in calls}) == 2
    # cut off after the JSON (max_tokens): the call still parses; broken JSON stays text
    cut, calls = parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {}}\n</', "hermes")
    assert cut is None and calls[0]["function"]["name"] == "f"
    assert parse_tool_calls('<tool_call>{"name": "f", "argu', "hermes") == ('<tool_call>{"name": "f", "argu', [])
    assert parse_tool_calls("just text", "hermes") == ("just text", [])


def test_llama3_json_replies_become_tool_calls():
    content, calls = parse_tool_calls(
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo"}}', "llama3_json"
    )
    assert content is None and json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    _, two = parse_tool_calls('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}', "llama3_json")
    assert [c["function"]["name"] for c in two] == ["a", "b"]
    assert parse_tool_calls("The weather is fine.", "llama3_json") == ("The weather is fine.", [])
    assert parse_tool_calls('{"no": "name"}', "llama3_json") == ('{"no": "name"}', [])


def test_streamed_text_is_held_back_where_a_call_may_start():
    assert may_start_call("Hello <tool", "hermes") == len("<tool")
    assert may_start_call("Hello <tool_call>{", "hermes") == len("<tool_call>{")
    assert may_start_call("Hello there", "hermes") == 0
    assert may_start_call("  {", "llama3_json") == 3 and may_start_call("Sure", "llama3_json") == 0


def test_parser_is_chosen_from_the_template(tiny_model):
    from transformers import AutoTokenizer

    assert parser_for_template(AutoTokenizer.from_pretrained(tiny_model).chat_template) == "hermes"
    llama = "{% if tools %}{{ tools | tojson }}{% endif %}<|python_tag|>{{ '\"parameters\": ' }}"
    assert parser_for_template(llama) == "llama3_json"
    assert parser_for_template("{{ messages }}") is None
    assert parser_for_template("{{ messages }}", "llama3_json") == "llama3_json"
    with pytest.raises(ValueError, match="not one of hermes, llama3_json"):
        parser_for_template(None, "mistral-ish")


def test_tool_choice_and_history():
    assert choice_of_tools([WEATHER], "auto") == ([WEATHER], False)
    assert choice_of_tools([WEATHER], "none") == ([], False)
    assert choice_of_tools([WEATHER], {"type": "function", "function": {"name": "get_weather"}}) == ([WEATHER], True)
    with pytest.raises(APIError, match="names 'nope', which is not among the tools"):
        choice_of_tools([WEATHER], {"type": "function", "function": {"name": "nope"}})
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    assert template_messages([{"role": "assistant", "tool_calls": calls}])[0]["tool_calls"][0]["function"] == {
        "name": "f",
        "arguments": {"x": 1},
    }
    with pytest.raises(APIError, match="arguments that are not JSON"):
        template_messages(
            [{"role": "assistant", "tool_calls": [dict(calls[0], function={"name": "f", "arguments": "{"})]}]
        )


def test_tiny_template_renders_tools_calls_and_results(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    chat = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny"},
    ]
    text = tokenizer.apply_chat_template(chat, tools=[WEATHER], tokenize=False)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in text
    assert "<tool_response>\nsunny\n</tool_response>" in text
    plain = tokenizer.apply_chat_template(chat[:1], tokenize=False)
    assert (
        plain
        == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
    )


def test_vllm_gets_tool_parser_flags_and_our_layer(tiny_model):
    from kernel_magics.serve.engines.vllm import VLLMProcess

    argv = VLLMProcess(tiny_model, "tiny").command("127.0.0.1", 8000)
    assert argv[1:3] == ["-m", "kernel_magics.serve.engines.vllm_main"]
    at = argv.index("--tool-call-parser")
    assert argv[at - 1] == "--enable-auto-tool-choice" and argv[at + 1] == "hermes"
    assert argv[argv.index("--tool-strict-level") + 1] == "parameter"
    assert json.loads(argv[argv.index("--structured-outputs-config") + 1])["disable_any_whitespace"] is True
    forced = VLLMProcess(tiny_model, "tiny", tool_call_parser="llama3_json").command("127.0.0.1", 8000)
    assert forced[forced.index("--tool-call-parser") + 1] == "llama3_json"


def test_served_ids_are_short_names(tiny_model, monkeypatch):
    import os

    from kernel_magics.config import settings

    monkeypatch.setattr(settings, "port", 30000 + os.getpid() % 10000)  # away from 8000, where others look
    by_path = km.serve(str(tiny_model), backend="transformers", name="by-path")
    try:
        assert by_path.models == ["tiny-qwen2"]
        assert by_path.client().models.retrieve("tiny-qwen2").id == "tiny-qwen2"
    finally:
        by_path.stop()
    named = km.serve(str(tiny_model), backend="transformers", served_model_name="assistant", name="named")
    try:
        assert [m.id for m in named.client().models.list().data] == ["assistant"]
    finally:
        named.stop()


@pytest.mark.vllm
def test_vllm_tool_call_grammar_allows_one_blank_in_a_row(tiny_model, monkeypatch):
    """vLLM's forced-call grammar, as our server layer builds it: `": "` as models write it, never a run of
    blanks (a weak model forced to call a tool wrote `{\\r\\r\\r...` until max_tokens)."""
    import xgrammar as xgr
    from transformers import AutoTokenizer
    from vllm.entrypoints.openai.chat_completion.protocol import (
        ChatCompletionNamedToolChoiceParam,
        ChatCompletionToolsParam,
    )
    from vllm.tool_parsers import structural_tag_registry as registry
    from vllm.tool_parsers.tool_strict_level import ToolStrictLevel

    from kernel_magics.serve.engines import vllm_main

    monkeypatch.setattr(registry, "get_model_structural_tag", registry.get_model_structural_tag)  # put back after
    vllm_main._bound_tool_call_grammars()
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(AutoTokenizer.from_pretrained(tiny_model)))
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        ChatCompletionToolsParam.model_validate(
            {"type": "function", "function": dict(WEATHER["function"], parameters=city)}
        )
    ]
    calls = {  # structural-tag model of each parser we pick -> a call in its format, blanks at {}
        "hermes": '<tool_call>\n{{"name": "get_weather", "arguments": {{{}"city": "Oslo"}}}}\n</tool_call>',
        "llama": '{{"name": "get_weather", "parameters": {{{}"city": "Oslo"}}}}',
    }
    for model, call in calls.items():
        for choice in ("required", ChatCompletionNamedToolChoiceParam(function={"name": "get_weather"})):
            tag = registry.get_model_structural_tag(
                model, tools, choice, reasoning=False, strict_level=ToolStrictLevel.PARAMETER
            )
            grammar = compiler.compile_structural_tag(json.dumps(tag.model_dump()))
            accepted = {
                blank: xgr.GrammarMatcher(grammar).accept_string(call.format(blank)) for blank in ("", "\n", "\r\r")
            }
            assert accepted == {"": True, "\n": True, "\r\r": False}, (model, choice)
