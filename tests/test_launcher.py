"""The launcher (``%swift`` alone): forms made from the argument spec, the live plan, Run and Insert cell
giving the same call, the language setting, the runs tab."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel_magics import cli
from kernel_magics.argspec import Command, args_from, knob
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.methods.registry import method

pytest.importorskip("ipywidgets")


@pytest.fixture()
def shell(workspace):
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kernel_magics")
    ip.run_line_magic("config", 'SwiftMagics.language = "en"')  # the shell's config outlives a test
    yield ip
    ip.run_line_magic("unload_ext", "kernel_magics")


def _form(name: str, **values):
    from kernel_magics.widgets.launcher_forms import CommandForm

    form = CommandForm(cli.command(name))
    for key, value in values.items():
        form.set_value(key, value)
    return form


def test_a_new_knob_in_a_methods_dataclass_appears_in_its_form_with_help_and_default():
    from kernel_magics.widgets.launcher_forms import CommandForm

    base = method("sft").argument_class()

    @dataclass
    class WithKnob(base):
        warmup_tokens: int = knob(1234, "tokens of warm-up before the schedule starts")

    command = Command("sft", "sft with one more knob", "kernel_magics.train.api:sft", args_from(WithKnob))
    form = CommandForm(command)
    assert [a.name for a in form.common] == ["model", "dataset", "method", "max_steps", "lr"]
    assert "warmup_tokens" in [a.name for a in form.more]
    assert form.inputs["warmup_tokens"].value == "1234"
    row = next(r for r in form.more_panel.children[0].children if "km-field-warmup_tokens" in r._dom_classes)
    assert "tokens of warm-up before the schedule starts" in row.children[-1].value
    assert "default: 1234" in row.children[-1].value
    form.set_value("warmup_tokens", "99")
    assert form.kwargs() == {"warmup_tokens": 99}
    assert "warmup_tokens: 99" in form.cell().body
    # the real sft form has one input per flag of the subcommand, nothing hand-listed
    real = CommandForm(cli.command("sft"))
    assert set(real.inputs) == {a.name for a in cli.command("sft").args}


@pytest.mark.parametrize(
    ("name", "values"),
    [
        (
            "sft",
            dict(model="tiny", dataset="data/train.jsonl", method="qlora", max_steps="30", lr="2e-4",
                 lora_r="4", target_modules="q_proj, v_proj", packing=True, gradient_checkpointing="false",
                 dtype="fp32", eval_steps="0.25"),
        ),
        ("grpo", dict(model="tiny", dataset="p.jsonl", reward="format, length", loss="gspo", beta="0", top_p="0.9")),
        ("serve", dict(model="smollm2", adapters="tuned=/tmp/a\nother=/tmp/b", port="8123", trust_remote_code="true")),
        ("export", dict(model_dir="out/merged model", format="bnb-4bit", outtype="q8_0", group_size="64")),
    ],
)  # fmt: skip
def test_the_inserted_cell_parses_to_the_forms_arguments(name, values):
    form = _form(name, **values)
    for arg in form.command.args:  # a flag whose default is decided at run time shows that default, not a blank
        if arg.flag and arg.default is None:
            assert form.inputs[arg.name].options[0][0].startswith("default: ")
    kwargs = form.kwargs()
    assert len(kwargs) == len(values)  # every changed field is an argument (none equals its default)
    cell = form.cell()
    call = cli.parse(cell.line, cell.body or None, prog="%%swift")
    assert call.command.name == name
    assert call.kwargs == kwargs
    assert cell.text.startswith(f"%%swift {name}" if cell.body else f"%swift {name}")
    common = {a.name for a in form.common}
    for key in kwargs:  # common fields on the line, the others in the YAML body
        assert (f"{key}:" in cell.body) == (key not in common), key


def test_a_bad_value_is_one_line_under_the_form():
    form = _form("sft", max_steps="ten")
    assert form.insert() is None
    assert "--max-steps" in form.message.value and "ten" in form.message.value
    assert "\n" not in form.message.value


def test_the_plan_follows_method_batch_and_length(tiny_model):
    form = _form("sft", model="tiny", device="cpu")
    form.refresh_plan(wait=True)
    assert "data-method='lora'" in form.plan_box.value  # auto on the CPU
    assert "auto on the CPU" in form.plan_box.value
    small = _peak(form.plan_box.value)
    form.set_value("method", "full")
    form.refresh_plan(wait=True)
    assert "data-method='full'" in form.plan_box.value
    form.set_value("method", "lora")
    form.set_value("batch_size", "32")
    form.set_value("max_length", "4096")
    form.refresh_plan(wait=True)
    assert _peak(form.plan_box.value) > small
    form.set_value("model", "no-such/model-anywhere")
    form.refresh_plan(wait=True)
    assert "km-plan-none" in form.plan_box.value and "no-such/model-anywhere" in form.plan_box.value


def _peak(text: str) -> float:
    return float(text.split("km-plan-peak'>")[1].split(" GiB")[0])


def _plan_reasons(monkeypatch) -> list[str]:
    """The reasons the plan gives on each kind of device, memory, 4-bit support and CPU bf16 support."""
    from kernel_magics import device as devices
    from kernel_magics.device import DeviceInfo
    from kernel_magics.train.planning import plan as plans
    from kernel_magics.train.planning.levers import COMPILE_NOTE

    def reasons(device, method="auto", dtype="auto", batch_size=1, estimates=None) -> list[str]:
        layout = dict(batch_size=batch_size, grad_accum=1, gradient_checkpointing=None)
        return plans.make_plan(method, device, estimates=estimates, dtype=dtype, **layout).reasons

    cpu = DeviceInfo("cpu", None, "CPU", 16.0, 10.0, False, "")
    found = [COMPILE_NOTE]
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda flags=None: None)
    found += reasons(cpu) + reasons(cpu, method="lora", dtype="bf16")
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda flags=None: "AMX-BF16")
    found += reasons(cpu) + reasons(cpu, method="full")
    found += reasons(DeviceInfo("mps", None, "Apple M2", 16.0, 12.0, True, ""), batch_size=4)
    for free, lora_gb, four_bit in [(40.0, 15.2, None), (40.0, None, None), (8.0, 15.2, None), (8.0, None, "no bnb")]:
        monkeypatch.setattr(plans, "four_bit_problem", lambda device, problem=four_bit: problem)
        gpu = DeviceInfo("cuda", 0, "NVIDIA L4", 48.0, free, True, "")
        found += reasons(gpu, estimates={"lora": lora_gb} if lora_gb else None)
    return list(dict.fromkeys(found))


def test_the_plan_says_why_in_chinese(monkeypatch, tiny_model):
    from kernel_magics.widgets.launcher_plan_words import plan_reason

    reasons = _plan_reasons(monkeypatch)
    assert len(reasons) == 15, reasons
    chinese = {reason: plan_reason(reason, "zh") for reason in reasons}
    assert [r for r, zh in chinese.items() if zh == r or not re.search("[\u4e00-\u9fff]", zh)] == []
    qlora = "auto: only 8.0 GiB free on NVIDIA L4 (LoRA would need ~15.2 GiB) -> QLoRA 4-bit"
    assert chinese[qlora] == "自动：NVIDIA L4 上只有 8.0 GiB 可用（LoRA 约需 15.2 GiB） → QLoRA 4 位"
    assert chinese["auto: 40.0 GiB free on NVIDIA L4 -> LoRA bf16"] == "自动：NVIDIA L4 上可用 40.0 GiB → LoRA bf16"
    assert all(plan_reason(r, "en") == r for r in reasons)
    monkeypatch.undo()
    from kernel_magics.widgets.launcher_forms import CommandForm

    form = CommandForm(cli.command("sft"), language="zh")
    form.set_value("model", "tiny")
    form.set_value("device", "cpu")
    form.refresh_plan(wait=True)
    assert "CPU 上自动选择 LoRA" in form.plan_box.value and re.search("批大小 \\d+ × 梯度累积 1", form.plan_box.value)
    assert "auto on the CPU" not in form.plan_box.value


def test_run_and_the_inserted_cell_start_the_same_run(shell, tiny_model):
    from kernel_magics.widgets.dashboard import Dashboard

    launcher = shell.run_line_magic("swift", "")
    form = launcher.forms["sft"]
    for key, value in dict(model="tiny", dataset=str(tiny_dataset("sft")), max_steps="2", lora_r="4").items():
        form.set_value(key, value)
    form.inputs["logging_steps"].value = "1"
    sent: list[str] = []
    launcher.bridge.send = lambda message: sent.append(message)
    form.insert()
    assert sent[0]["type"] == "insert" and sent[0]["text"] == form.cell().text
    launcher.bridge._on_message(None, {"type": "inserted", "id": sent[0]["id"], "ok": True}, None)
    assert "inserted below this cell" in form.message.value

    board = form.run()
    assert isinstance(board, Dashboard) and board.run.wait(120) == "finished", board.run.error
    second = shell.run_cell(sent[0]["text"]).result.run  # the inserted cell, executed as the notebook would
    assert second.wait(120) == "finished", second.error
    assert second.output_dir != board.run.output_dir
    for key in ("arguments", "plan", "model", "command", "max_steps"):
        assert getattr(second.config, key) == getattr(board.run.config, key), key

    runs = launcher.show_action("runs")
    ids = {f"<code>{Path(run.output_dir).name}</code>" for run in (board.run, second)}
    rows = [r for r in runs.table.children if any(i in r.children[0].value for i in ids)]  # runs of other tests too
    assert len(rows) == 2 and all("finished" in r.children[0].value for r in rows)
    assert [b.description for b in rows[0].children[1:]] == ["Dashboard"]  # finished: no resume, no stop
    assert isinstance(runs.attach(str(second.output_dir)), Dashboard)


def test_language_setting_and_chinese_labels(shell, monkeypatch, capsys):
    from traitlets import TraitError

    from kernel_magics.widgets.launcher_i18n import default_language

    monkeypatch.setenv("LC_ALL", "zh_CN.UTF-8")
    assert default_language() == "zh"
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    assert default_language() == "en"
    shell.run_line_magic("config", 'SwiftMagics.language = "zh"')
    launcher = shell.run_line_magic("swift", "")
    assert launcher.tabs.titles[:3] == ("找模型", "下载", "微调")
    form = launcher.forms["sft"]
    labels = [row.children[0].value for row in form.children if "km-launcher-field" in row._dom_classes]
    assert labels == ["模型", "数据集", "方法", "步数", "学习率"]
    assert "更多参数" in form.more_panel.titles[0]
    magics = shell.magics_manager.registry["SwiftMagics"]
    with pytest.raises(TraitError, match="language must be one of en, zh"):
        magics.language = "fr"
    shell.run_line_magic("swift", "--help")  # flags still print the usage
    assert "usage: %swift SUBCOMMAND" in capsys.readouterr().out


def test_runs_tab_stops_and_resumes_a_run_of_this_kernel(shell, tiny_model):
    launcher = shell.run_line_magic("swift", "")
    form = launcher.forms["sft"]
    values = dict(model="tiny", dataset=str(tiny_dataset("sft")), max_steps="3000", lora_r="4")
    for key, value in values.items():
        form.set_value(key, value)
    run = form.run().run
    runs = launcher.show_action("runs")

    def buttons() -> list[str]:
        runs.refresh()
        return [b.description for b in runs.table.children[0].children[1:]]

    assert buttons() == ["Dashboard", "Stop"]  # live in this kernel: no resume
    while run.progress.get("step", 0) < 1 and not run.done:
        run.wait(0.1)
    runs.stop(str(run.output_dir))
    assert run.wait(120) == "stopped", run.error
    assert buttons() == ["Dashboard", "Resume"]
    resumed = runs.resume(str(run.output_dir)).run  # the run from its folder, continued from its checkpoint
    assert resumed.output_dir == run.output_dir and resumed.status in ("queued", "running")
    assert buttons() == ["Dashboard", "Stop"]
    runs.stop(str(run.output_dir))
    assert resumed.wait(120) == "stopped", resumed.error
    assert any("resuming" in note for note in resumed.notes)


def test_a_run_from_the_launcher_is_served_and_chatted_with_from_the_serve_tab(shell, tiny_model):
    launcher = shell.run_line_magic("swift", "")
    form = launcher.forms["sft"]
    for key, value in dict(model="tiny", dataset=str(tiny_dataset("sft")), max_steps="2", lora_r="4").items():
        form.set_value(key, value)
    run = form.run().run
    assert run.wait(180) == "finished", run.error
    serve, chat = launcher.forms["serve"], launcher.forms["chat"]  # set by the run, before the tab was opened
    assert serve.kwargs()["model"] == "tiny" and serve.kwargs()["adapters"] == [("tuned", str(run.adapter_dir))]
    assert chat.kwargs() == {"model": "tuned"}
    assert "tuned" in launcher.status.value
    serve.set_value("backend", "transformers")
    server = serve.run()
    try:
        assert server.models == ["tiny", "tuned"], serve.message.value
        panel = chat.run()
        assert panel.target.models == ["tuned"] and panel.target.url == server.url
        reply = server.client().chat.completions.create(
            model="tuned", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
        )
        assert reply.usage.completion_tokens == 4
    finally:
        server.stop()
