"""The practice classroom (the service in this process, no hub) on the tiny model: the same routes, checks and
policies as a class's service, reached through the environment it sets, and gone after ``stop()``."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serve_support import make_lora_adapter, reference_reply

import kernel_magics as km
from kernel_magics.classroom.client import service
from kernel_magics.classroom.slot_client import request_slot
from kernel_magics.errors import SwiftConfigError, SwiftServeError

MESSAGES = [{"role": "user", "content": "Write a short poem about the sea."}]


def _get(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_practice_classroom_serves_a_class_of_stand_ins_and_leaves_no_trace(tiny_model: Path, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("KM_CLASSROOM_URL", raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the service keeps published adapters
    monkeypatch.setenv("KM_CLASSROOM_TOKEN", "from-before")
    with pytest.raises(SwiftConfigError, match="takes no setting 'folder'"):
        km.practice_classroom(str(tiny_model), folder=str(tmp_path))
    with pytest.raises(SwiftConfigError, match="--chat-policy must be one of own, everyone"):
        km.practice_classroom(str(tiny_model), chat_policy="all")
    assert not list((tmp_path / "tmp").iterdir()), "a refused start leaves no folder"
    practice = km.practice_classroom(str(tiny_model), chat_policy="own", train_slots=1)
    folder = practice.folder
    try:
        assert service() == (practice.url, practice.tokens["student"])  # km.publish & co. find it by themselves
        mine = make_lora_adapter(tiny_model, tmp_path / "mine" / "adapter", seed=1)
        theirs = make_lora_adapter(tiny_model, tmp_path / "theirs" / "adapter", seed=2)
        assert km.publish(mine.parent, name="pirate")["id"] == "student/pirate"
        assert km.publish(theirs, name="poem", token=practice.tokens["classmate"])["id"] == "classmate/poem"
        base = _get(practice.url + "/v1/models", practice.tokens["student"])[1]["data"][0]["id"]
        listed = {user: [m["id"] for m in _get(practice.url + "/v1/models", token)[1]["data"]] for user, token in practice.tokens.items()}
        assert listed == {"student": [base, "student/pirate"], "classmate": [base, "classmate/poem"],
                          "teacher": [base, "student/pirate", "classmate/poem"]}  # fmt: skip
        assert _get(practice.url + "/v1/models", "no-such-token")[0] == 401
        import openai

        client = openai.OpenAI(base_url=practice.url + "/v1", api_key=practice.tokens["student"])
        reply = client.chat.completions.create(model="student/pirate", messages=MESSAGES, max_tokens=8, temperature=0)
        assert reply.choices[0].message.content == reference_reply(tiny_model, MESSAGES, 8, mine)
        with pytest.raises(openai.NotFoundError, match="this server has: .*student/pirate"):  # "own": not his to see
            client.chat.completions.create(model="classmate/poem", messages=MESSAGES, max_tokens=8)
        with request_slot("practice run", heartbeat_s=0.5) as slot:  # the training queue answers too
            assert slot.state == "granted"
        assert km.teacher(token=practice.tokens["teacher"]).adapters() == ["classmate/poem", "student/pirate"]
    finally:
        practice.stop()
    assert os.environ["KM_CLASSROOM_TOKEN"] == "from-before" and "KM_CLASSROOM_URL" not in os.environ
    assert not Path(folder).exists() and "stopped" in repr(practice)
    with pytest.raises(SwiftServeError, match="cannot reach the classroom service"):
        km.publish(mine, name="pirate", url=practice.url, token=practice.tokens["student"])
