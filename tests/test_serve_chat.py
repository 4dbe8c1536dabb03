"""The chat panel's kernel side: streaming into ``turns``, history, compare mode, dataset rows, %swift chat."""

from __future__ import annotations

import json

import pytest
from serve_support import make_lora_adapter

import kernel_magics as km
from kernel_magics.errors import SwiftUsageError
from kernel_magics.widgets.chat import ChatPanel


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    # seed 7: greedy replies of visible words (" Ger Ger ..."), top-2 logprob margins >= 0.04 at every step
    adapter = make_lora_adapter(tiny_model, tmp_path_factory.mktemp("chat-lora") / "tuned", seed=7)
    # a chunk per token (no coalescing), so the streaming test sees every piece however fast the machine is
    srv = km.serve("tiny", adapters={"tuned": adapter}, backend="transformers", name="chat-test", stream_interval_ms=0)
    yield srv
    srv.stop()


def _direct(server, model, messages, max_tokens):
    reply = server.client().chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=max_tokens
    )
    return reply.choices[0].message.content


def test_panel_streams_and_keeps_history(server, monkeypatch):
    from kernel_magics.serve.api import chat
    from kernel_magics.widgets import chat as chat_widget

    monkeypatch.setattr(chat_widget, "PUSH_EVERY_S", 0.0)  # push every piece, to watch the stream

    panel = ChatPanel(chat(url=server.url, model="tuned", temperature=0, max_tokens=12, system="Be brief."))
    assert panel.models == ["tuned"] and panel.available == ["tiny", "tuned"]
    seen: list[str] = []
    panel.observe(lambda change: change["new"] and seen.append(change["new"][-1]["answers"]["tuned"]), "turns")
    panel.send_prompt("Translate 'dog' into Chinese.", wait=True)
    first = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Translate 'dog' into Chinese."}]
    answer = _direct(server, "tuned", first, 12)
    assert answer.strip() and panel.turns[-1]["answers"]["tuned"] == answer and panel.turns[-1]["done"]["tuned"]
    assert not panel.busy and "tok/s" in panel.turns[-1]["stats"]["tuned"]
    partial = {text for text in seen if text and text != answer}
    assert len(partial) >= 2 and all(answer.startswith(text) for text in partial)  # it streamed, in order
    assert seen[-1] == answer

    panel.send_prompt("Hello!", wait=True)
    history = panel.history
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user", "assistant"]
    assert history[2]["content"] == answer
    assert history[4]["content"] == _direct(server, "tuned", history[:4], 12)  # the context was sent along
    assert panel.export_rows("sft") == [{"messages": history}]

    panel.clear()
    assert panel.turns == [] and panel.history == [{"role": "system", "content": "Be brief."}]


def test_compare_mode_and_preference_rows(server, tmp_path):
    from kernel_magics.serve.api import chat

    panel = ChatPanel(chat(url=server.url, compare="base,tuned", temperature=0, max_tokens=10))
    assert panel.models == ["tiny", "tuned"]
    panel.send_prompt("What is the capital of France?", wait=True)
    answers = panel.turns[0]["answers"]
    assert answers["tiny"] == _direct(
        server, "tiny", [{"role": "user", "content": "What is the capital of France?"}], 10
    )
    assert answers["tuned"] != answers["tiny"]
    panel._on_message(panel, {"type": "prefer", "turn": 0, "model": "tuned"}, None)  # the browser's button
    assert panel.export_rows("dpo") == [
        {"prompt": "What is the capital of France?", "chosen": answers["tuned"], "rejected": answers["tiny"]}
    ]
    assert panel.export_rows("sft")[0]["messages"][-1] == {"role": "assistant", "content": answers["tuned"]}
    conversations = panel.histories()  # one conversation per model, each with its own answer
    assert list(conversations) == ["tiny", "tuned"]
    assert [c[-1]["content"] for c in conversations.values()] == [answers["tiny"], answers["tuned"]]
    path = panel.save_rows(tmp_path / "prefs.jsonl", "dpo")
    panel.save_rows(path, "dpo")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["chosen"] == answers["tuned"]
    with pytest.raises(SwiftUsageError):
        panel.prefer(3, "tuned")
    with pytest.raises(SwiftUsageError):
        panel.export_rows("kto")


def test_reply_error_shows_in_the_panel(server):
    from kernel_magics.serve.api import chat

    panel = ChatPanel(chat(url=server.url, temperature=0, max_tokens=5))
    panel.max_tokens = 10**6  # more than the context: the server answers 400
    panel.send_prompt("hello", wait=True)
    assert "maximum context length" in panel.turns[0]["errors"]["tiny"]
    assert "maximum context length" in panel.status and not panel.busy
    assert panel.history == []  # a failed turn is not part of the conversation


def test_swift_chat_magic_shows_the_panel(server):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "kernel_magics")
    try:
        panel = shell.run_line_magic("swift", "chat --compare base,tuned --max-tokens 8")
        assert isinstance(panel, ChatPanel) and panel.models == ["tiny", "tuned"] and panel.url == server.url
        result = shell.run_cell("%swift chat --model nothere")
        assert not result.success and "model 'nothere' is not served" in str(result.error_in_exec)
    finally:
        shell.run_line_magic("unload_ext", "kernel_magics")  # stops this kernel's servers, as on shutdown
    assert server.status == "stopped"
