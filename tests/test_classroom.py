"""The classroom's parts without a hub: adapter checks, fair turns, token budgets, the slot queue, the backend
choice and the subcommands. (``test_classroom_hub.py`` runs them together behind a real JupyterHub.)"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from kernel_magics import cli
from kernel_magics.classroom.fairness import FairScheduler, TokenMeter
from kernel_magics.classroom.settings import ClassroomSettings
from kernel_magics.classroom.slots import SlotQueue, ordinal
from kernel_magics.classroom.store import AdapterStore, adapter_id
from kernel_magics.errors import SwiftConfigError, SwiftModelError


# -- adapters ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from serve_support import make_lora_adapter

    return make_lora_adapter(tiny_model, tmp_path_factory.mktemp("poem") / "adapter", seed=3, r=8)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def _files(adapter: Path, **changes: object) -> dict[str, bytes]:
    config = json.loads((adapter / "adapter_config.json").read_text())
    config.update(changes)
    return {"adapter_config.json": json.dumps(config).encode(), "adapter_model.safetensors": (adapter / "adapter_model.safetensors").read_bytes()}


def _store(tiny_model: Path, tmp_path: Path, max_rank: int = 16) -> AdapterStore:
    return AdapterStore(tmp_path / "store", tiny_model, {"tiny", str(tiny_model)}, max_rank, 5 * 2**20)


def test_a_good_adapter_passes_and_is_stored_by_renaming_a_complete_folder(tiny_model, adapter, tmp_path):
    store = _store(tiny_model, tmp_path)
    upload = store.check(_zip(_files(adapter)))
    assert upload.rank == 8 and upload.size_bytes > 1000
    folder = store.commit(store.stage(upload), "alice", "poem")
    assert folder == tmp_path / "store" / "alice" / "poem"
    assert (folder / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    assert store.stored() == {"alice/poem": folder} and store.names("bob") == []
    store.commit(store.stage(upload), "alice", "poem")  # replaced in place, nothing left over
    assert list((tmp_path / "store" / ".staging").iterdir()) == []
    store.remove("alice", "poem")
    assert store.stored() == {}


def test_bad_adapters_are_refused_in_one_line(tiny_model, adapter, tmp_path):
    import numpy as np
    from safetensors.numpy import save

    store = _store(tiny_model, tmp_path, max_rank=4)
    good = _files(adapter)
    wrong_shape = save({"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": np.zeros((4, 64), np.float32)})
    unknown = save({"base_model.model.model.layers.0.mlp.gate.lora_A.weight": np.zeros((4, 128), np.float32)})
    cases = {
        "not a zip archive": b"PK but not really",
        "pickle file; only safetensors": _zip({"adapter_config.json": good["adapter_config.json"], "adapter_model.bin": b"x"}),
        "exactly adapter_config.json and adapter_model.safetensors": _zip({**good, "extra.py": b"print()"}),
        "only LoRA adapters": _zip(_files(adapter, peft_type="IA3")),
        "trained on other/model; this class serves": _zip(_files(adapter, base_model_name_or_path="other/model")),
        "rank 8; this class takes ranks up to 4": _zip(good),
        "not a safetensors file": _zip({**good, "adapter_model.safetensors": b"\xff" * 64}),
        r"has shape \[4, 64\], the model.s .*is \[256, 128\]": _zip({**good, "adapter_model.safetensors": wrong_shape}),
        "which the served model does not have": _zip({**good, "adapter_model.safetensors": unknown}),
    }
    for expected, archive in cases.items():
        with pytest.raises(SwiftModelError, match=expected) as caught:
            store.check(archive)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    small = AdapterStore(tmp_path / "small", tiny_model, {"tiny"}, 64, 1000)
    with pytest.raises(SwiftModelError, match="at most"):
        small.check(_zip(good))
    assert store.stored() == {}


def test_adapter_names_are_checked():
    assert adapter_id("alice", "poem-2.v1") == "alice/poem-2.v1"
    for user, name in (("alice", "../x"), ("alice", "a/b"), ("al ice", "poem"), ("alice", ""), ("..", "poem"), (".staging", "x")):
        with pytest.raises(SwiftConfigError):
            adapter_id(user, name)


# -- fair turns ----------------------------------------------------------------------------------------
class FakeEngine:
    """Takes requests and finishes them only when told: which user's went in, in what order."""

    def __init__(self) -> None:
        self.inside: list[SimpleNamespace] = []
        self.order: list[str] = []
        self.lock = threading.Lock()

    def submit(self, handle: SimpleNamespace) -> None:
        with self.lock:
            self.inside.append(handle)
            self.order.append(handle.user)

    def finish_all(self) -> None:
        with self.lock:
            done, self.inside = self.inside, []
        for handle in done:
            handle.push(SimpleNamespace(finish_reason="stop", prompt_tokens=10, completion_tokens=5))


def _handle(user: str) -> SimpleNamespace:
    handle = SimpleNamespace(user=user, finished=False, cancelled=threading.Event())

    def push(item: SimpleNamespace) -> None:
        handle.finished = True

    handle.push = push
    return handle


def _wait_for(condition, timeout=10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_flood_from_one_user_waits_in_their_own_line():
    engine = FakeEngine()
    turns = FairScheduler(engine, capacity=4, per_user=2, meter=TokenMeter(0)).start()
    try:
        for _ in range(30):
            turns.submit("bob", _handle("bob"))
        _wait_for(lambda: len(engine.inside) == 2)
        assert turns.waiting("bob") == 28 and turns.inside("bob") == 2  # bob's cap, though capacity is 4
        turns.submit("alice", _handle("alice"))
        _wait_for(lambda: len(engine.inside) == 3)  # alice goes in at once, beside bob's two
        assert engine.order == ["bob", "bob", "alice"]
        for _ in range(3):
            turns.submit("alice", _handle("alice"))
        _wait_for(lambda: len(engine.inside) == 4)  # the last free place: alice's second (her cap is 2)
        assert engine.order[3] == "alice"
        engine.finish_all()  # four places free: the two users take turns, two each
        _wait_for(lambda: len(engine.inside) == 4)
        assert sorted(engine.order[4:8]) == ["alice", "alice", "bob", "bob"]
        engine.finish_all()  # alice is done: bob's line goes on at his cap
        _wait_for(lambda: len(engine.inside) == 2)
        assert engine.order.count("alice") == 4 and engine.order[8:] == ["bob", "bob"]
        assert turns.meter.figures("alice").most_ahead <= 4  # at most one engine's worth, never bob's backlog
        assert turns.meter.last_minute("bob") == (4, 60) and turns.meter.last_minute("alice") == (4, 60)
    finally:
        turns.stop()


def test_exclusive_changes_wait_until_nothing_generates():
    engine = FakeEngine()
    turns = FairScheduler(engine, capacity=4, per_user=4, meter=TokenMeter(0)).start()
    try:
        turns.submit("bob", _handle("bob"))
        _wait_for(lambda: len(engine.inside) == 1)
        seen: list[int] = []
        changer = threading.Thread(target=lambda: seen.append(turns.exclusive(lambda: len(engine.inside))))
        changer.start()
        _wait_for(lambda: turns._paused == 1)
        turns.submit("alice", _handle("alice"))  # waits until the change is done
        engine.finish_all()
        changer.join(10)
        assert seen == [0]
        _wait_for(lambda: engine.order == ["bob", "alice"])
    finally:
        turns.stop()


def test_token_budget_says_when_to_retry():
    now = [1000.0]
    meter = TokenMeter(100, clock=lambda: now[0])
    meter.add("bob", 60)
    assert meter.retry_after("bob") is None
    now[0] += 20
    meter.add("bob", 50)
    assert meter.retry_after("bob") == 40  # the first 60 tokens leave the window 40 s from now
    now[0] += 41
    assert meter.retry_after("bob") is None and meter.used("bob") == 50
    assert TokenMeter(0).retry_after("bob") is None


# -- training slots ------------------------------------------------------------------------------------
def test_slots_are_granted_in_order_and_freed_by_release_timeout_and_time_limit():
    now = [0.0]
    queue = SlotQueue(slots=2, time_limit_s=600, heartbeat_timeout_s=30, clock=lambda: now[0])
    a, b, c, d = (queue.acquire(user, f"run {user}") for user in ("alice", "bob", "carol", "dave"))
    assert [a["state"], b["state"], c["state"], d["state"]] == ["granted", "granted", "queued", "queued"]
    assert (c["position"], d["position"]) == (1, 2) and d["message"].startswith("queued: 2nd in line, about")
    assert c["wait_s"] == d["wait_s"] == 600  # no run has ended yet: each waits for a holder to use its whole slot
    queue.release(a["lease_id"], "alice")
    assert queue.heartbeat(c["lease_id"], "carol")["state"] == "granted"  # first in line first
    assert queue.heartbeat(d["lease_id"], "dave")["position"] == 1
    now[0] = 25.0
    for lease, user in ((c, "carol"), (d, "dave")):
        queue.heartbeat(lease["lease_id"], user)
    now[0] = 40.0  # bob sent nothing for 40 s: his slot goes to dave
    assert queue.heartbeat(d["lease_id"], "dave")["state"] == "granted"
    assert queue.heartbeat(b["lease_id"], "bob")["state"] == "expired"
    now[0] = 700.0
    carol = queue.heartbeat(c["lease_id"], "carol")
    assert carol["state"] == "expired"  # no heartbeat since 25 s
    now[0] = 0.0
    limited = SlotQueue(slots=1, time_limit_s=60, heartbeat_timeout_s=1000, clock=lambda: now[0])
    first = limited.acquire("alice")
    second = limited.acquire("bob")
    now[0] = 61.0
    assert limited.heartbeat(first["lease_id"], "alice")["state"] == "revoked"
    assert limited.heartbeat(second["lease_id"], "bob")["state"] == "granted"
    assert len(limited.status()["held"]) == 1


def test_a_lease_is_its_owners_unless_a_teacher_ends_it():
    queue = SlotQueue(slots=1, time_limit_s=60, heartbeat_timeout_s=60)
    lease = queue.acquire("alice")
    with pytest.raises(SwiftConfigError, match="no training slot lease"):
        queue.heartbeat(lease["lease_id"], "bob")
    with pytest.raises(SwiftConfigError):
        queue.release(lease["lease_id"], "bob")
    ended = queue.release(lease["lease_id"], "carol", teacher=True)
    assert ended["state"] == "released" and "stopped by carol" in ended["message"]
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]


# -- settings, backend, subcommands ---------------------------------------------------------------------
def test_settings_and_backend_choice_are_one_line_errors(tiny_model):
    from kernel_magics.classroom.service import classroom_backend
    from kernel_magics.device import select_device

    for change, expected in (({"max_rank": 0}, "--max-rank must be positive"), ({"chat_policy": "all"}, "--chat-policy must be one of own, everyone"),
                             ({"tokens_per_minute": -1}, "tokens-per-minute")):  # fmt: skip
        with pytest.raises(SwiftConfigError, match=expected):
            ClassroomSettings(**change).check()
    cpu = select_device("cpu")
    assert classroom_backend("transformers", cpu, tiny_model) == "transformers"
    assert classroom_backend("hf", cpu, tiny_model) == "transformers"
    from kernel_magics.errors import SwiftServeError
    from kernel_magics.serve.engines.vllm import vllm_available

    if vllm_available():  # vLLM's engine runs inside the service (classroom/vllm_engine.py)
        assert classroom_backend("vllm", cpu, tiny_model) == "vllm"
    else:
        with pytest.raises(SwiftServeError, match="the vllm engine cannot serve .*vLLM is not installed"):
            classroom_backend("vllm", cpu, tiny_model)


def test_the_service_needs_the_hub_and_says_so(monkeypatch):
    from kernel_magics.classroom.service import hub_identity, listen_address

    for name in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SwiftConfigError, match="runs as a JupyterHub service.*c.JupyterHub.services"):
        hub_identity(ClassroomSettings())
    assert listen_address(ClassroomSettings()) == ("127.0.0.1", 8765)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:9123/")
    assert listen_address(ClassroomSettings()) == ("127.0.0.1", 9123)
    assert listen_address(ClassroomSettings(port=9999)) == ("127.0.0.1", 9999)


def test_subcommands_are_declared_from_the_settings_and_the_client(adapter):
    call = cli.parse("classroom --model tiny --chat-policy everyone --train-slots 2 --tokens-per-minute 0")
    assert call.kwargs["chat_policy"] == "everyone" and call.kwargs["train_slots"] == 2
    assert "whose adapters a student may chat with" in cli.command("classroom").parser().format_help()
    call = cli.parse(f"publish {adapter} --name poem --url http://x")
    assert call.kwargs == {"adapter": str(adapter), "name": "poem", "url": "http://x"}
    import kernel_magics as km

    assert km.publish.__module__ == "kernel_magics.classroom.client"


def test_publish_needs_a_service_and_a_safetensors_adapter(adapter, tmp_path, monkeypatch):
    from kernel_magics.classroom.client import adapter_files, publish

    monkeypatch.delenv("KM_CLASSROOM_URL", raising=False)
    with pytest.raises(SwiftConfigError, match="KM_CLASSROOM_URL"):
        publish(adapter, name="poem")
    assert adapter_files(adapter.parent) == (adapter, adapter.parent.name)  # a run folder holding adapter/
    pickled = tmp_path / "old"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text("{}")
    (pickled / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(SwiftModelError, match="only safetensors adapters"):
        adapter_files(pickled)


def test_the_teachers_panel_shows_the_class_and_its_buttons_act():
    from kernel_magics.classroom.teacher import ClassView
    from kernel_magics.widgets.classroom import show

    data = {
        "model": "tiny-qwen2", "backend": "transformers", "memory": {"rss_mb": 512.0},
        "users": {"bob": {"requests_last_min": 7, "tokens_last_min": 900, "waiting": 3, "inside": 2, "most_ahead": 1}},
        "adapters": {"alice": ["poem"], "bob": ["poem", "haiku"]},
        "slots": {"slots": 1, "held": [{"lease_id": "L1", "user": "alice", "label": "sft poems", "message": "training: 29 min left of the slot",
                                        "figures": {"step": 12}}],
                  "queued": [{"lease_id": "L2", "user": "bob", "label": "sft", "message": "queued: 1st in line, about 30 min"}]},
    }  # fmt: skip
    done: list[tuple[str, str]] = []
    view = ClassView("http://service", "token", data)
    view.refresh = lambda: view  # the service is not asked in this test
    view.unload = lambda model: done.append(("unload", model))
    view.stop_run = lambda lease: done.append(("stop", lease))
    panel = show(view)

    def walk(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    texts = " ".join(getattr(w, "value", "") for w in walk(panel) if isinstance(getattr(w, "value", None), str))
    assert "900" in texts and "alice/poem" in texts and "bob/haiku" in texts and "step 12" in texts and "1st in line" in texts
    buttons = {}
    for box in walk(panel):
        children = list(getattr(box, "children", ()))
        if len(children) == 2 and hasattr(children[1], "on_click"):
            buttons[children[0].value] = children[1]
    buttons["bob/haiku"].click()
    next(b for label, b in buttons.items() if label.startswith("alice · sft poems")).click()
    assert done == [("unload", "bob/haiku"), ("stop", "L1")]
    assert "alice/poem" in view.to_text() and "queued: bob sft" in view.to_text()


def test_the_shared_engine_applies_the_chat_policy_and_each_users_budget():
    from kernel_magics.classroom.auth import CALLER, Caller
    from kernel_magics.classroom.shared_engine import SharedEngine, may_chat
    from kernel_magics.serve.protocol import APIError

    assert may_chat(Caller("bob"), "base", "base", "own") and may_chat(Caller("bob"), "bob/poem", "base", "own")
    assert not may_chat(Caller("bob"), "alice/poem", "base", "own")
    assert may_chat(Caller("bob"), "alice/poem", "base", "everyone") and may_chat(Caller("carol", teacher=True), "alice/poem", "base", "own")
    engine = FakeEngine()
    engine.models = ["base", "alice/poem"]
    now = [0.0]
    turns = FairScheduler(engine, capacity=4, per_user=2, meter=TokenMeter(100, clock=lambda: now[0]))  # not started: lines only
    view = SharedEngine(engine, turns, "own")
    token = CALLER.set(Caller("bob"))
    try:
        request = _handle("bob")
        request.model = "alice/poem"
        with pytest.raises(APIError, match="belongs to another student") as refused:
            view.submit(request)
        assert refused.value.status == 403
        request.model = "base"
        view.submit(request)
        assert view.pending() == 1 and turns.waiting("alice") == 0
        assert view.models == ["base"]  # under "own", alice's adapter is not bob's to see
        teacher = CALLER.set(Caller("carol", teacher=True))
        assert view.models == ["base", "alice/poem"]
        CALLER.reset(teacher)
        assert SharedEngine(engine, turns, "everyone").models == ["base", "alice/poem"]
        turns.meter.add("bob", 150)
        with pytest.raises(APIError, match="bob used 150 tokens in the last minute, the class's limit is 100") as limited:
            view.submit(request)
        assert limited.value.status == 429 and limited.value.headers == {"Retry-After": "60"}
    finally:
        CALLER.reset(token)
    with pytest.raises(APIError, match="no caller"):
        view.pending()
    assert view.models == ["base", "alice/poem"]  # no caller: the OpenAPI document names every served model


def test_adapters_load_into_the_running_engine_and_the_last_one_leaves_a_plain_model(tiny_model, adapter, tmp_path):
    from peft import PeftModel
    from serve_support import make_lora_adapter

    from kernel_magics.classroom.shared_engine import load_adapter, unload_adapter
    from kernel_magics.errors import SwiftModelError
    from kernel_magics.serve.engines.hf import HFEngine

    other = make_lora_adapter(tiny_model, tmp_path / "other", seed=5, r=4)
    engine = HFEngine(tiny_model, "tiny")
    engine.start()
    try:
        load_adapter(engine, "alice/poem", adapter)
        load_adapter(engine, "bob/poem", other)
        assert engine.models == ["tiny", "alice/poem", "bob/poem"] and isinstance(engine.model, PeftModel)
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
        (broken / "adapter_model.safetensors").write_bytes(b"not weights")
        with pytest.raises(SwiftModelError, match="does not load into tiny"):
            load_adapter(engine, "carol/bad", broken)
        assert engine.models == ["tiny", "alice/poem", "bob/poem"] and "carol/bad" not in engine.model.peft_config
        unload_adapter(engine, "alice/poem")
        assert engine.models == ["tiny", "bob/poem"] and list(engine.model.peft_config) == ["bob/poem"]
        unload_adapter(engine, "bob/poem")
        assert engine.models == ["tiny"] and not isinstance(engine.model, PeftModel) and not engine.adapter_dirs
        load_adapter(engine, "alice/poem", adapter)  # and back
        assert engine.models == ["tiny", "alice/poem"]
    finally:
        engine.shutdown()
