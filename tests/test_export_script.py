"""run.to_script / %swift export-script: the script reproduces the run's losses outside Jupyter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics.errors import SwiftUsageError
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.api import export_script
from kernel_magics.train.script import to_script

ARGS = dict(max_steps=6, batch_size=4, logging_steps=1, save_steps=100, lr=1e-3, lora_r=8, lora_alpha=16, seed=3)


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    from kernel_magics.config import settings

    old = settings.workspace
    settings.workspace = str(tmp_path_factory.mktemp("script-ws"))
    try:
        run = km.sft("tiny", str(tiny_dataset("sft")), method="lora", lora_dropout=0.0, verbose=False, **ARGS)
        assert run.wait(300) == "finished", run.error
    finally:
        settings.workspace = old
    return run


def _losses(folder: Path) -> list[float]:
    rows = [json.loads(line) for line in (folder / "logging.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("loss") is not None]


def _env(km_cache: Path, out: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "KERNEL_MAGICS_CACHE_DIR": str(km_cache), "OUT": str(out)}


@pytest.mark.slow
def test_shell_script_reproduces_losses_and_is_idempotent(finished_run, km_cache, tmp_path):
    script = to_script(finished_run, tmp_path / "scripts", kind="shell")
    text = script.read_text()
    assert script.name.endswith(".sh") and os.access(script, os.X_OK)
    assert "--max-steps 6" in text and "--lr 0.001" in text and "--lora-dropout 0.0" in text
    data = next((tmp_path / "scripts").glob("*-data/*.jsonl"))  # the data travels with the script
    assert data.read_bytes() == tiny_dataset("sft").read_bytes()
    out = tmp_path / "repro"
    env = {**_env(km_cache, out), "KM_PYTHON": sys.executable}
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert _losses(out) == pytest.approx(_losses(finished_run.output_dir), abs=1e-5)
    assert (out / "merged" / "config.json").is_file()
    second = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "training already done" in second.stdout
    data.write_text(data.read_text() + "\n")  # a changed data file is refused
    shutil_out = tmp_path / "repro2"
    third = subprocess.run(["bash", str(script)], env={**env, "OUT": str(shutil_out)}, capture_output=True, text=True)
    assert third.returncode != 0 and "has changed" in third.stderr


@pytest.mark.slow
def test_python_script_reproduces_losses(finished_run, km_cache, tmp_path):
    script = finished_run.to_script(tmp_path / "repro.py", kind="python")
    out = tmp_path / "repro-py"
    result = subprocess.run(
        [sys.executable, str(script)], env=_env(km_cache, out), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert _losses(out) == pytest.approx(_losses(finished_run.output_dir), abs=1e-5)


def test_export_script_command_and_errors(finished_run, tmp_path, capsys):
    path = export_script(str(finished_run.output_dir), str(tmp_path / "r.sh"))
    assert path.is_file() and "bash" in capsys.readouterr().out
    with pytest.raises(SwiftUsageError, match="no run 'nope'"):
        export_script("nope")
    with pytest.raises(SwiftUsageError, match="did you mean 'shell'"):
        to_script(finished_run, tmp_path / "x", kind="shel")


def _train(workspace_dir: Path, **kwargs):  # noqa: ANN202 - a Run
    from kernel_magics.config import settings

    old = settings.workspace
    settings.workspace = str(workspace_dir)
    try:
        run = kwargs.pop("function")(verbose=False, **kwargs)
        assert run.wait(300) == "finished", run.error
    finally:
        settings.workspace = old
    return run


PREFERENCE = dict(max_steps=3, batch_size=2, logging_steps=1, save_steps=100, lora_r=4, lora_alpha=8, seed=5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loss", "data", "kind", "extra"),
    [
        ("dpo", "dpo", "python", {"beta": 0.2}),
        ("orpo", "dpo", "shell", {"lr": 1e-3}),
        ("kto", "kto", "python", {"desirable_weight": 1.5}),
        ("simpo", "dpo", "shell", {"simpo_gamma": 0.3}),
    ],
)
def test_every_preference_loss_exports_and_reproduces(tiny_model, km_cache, tmp_path, loss, data, kind, extra):
    """ORPO / KTO / SimPO runs record their loss as the run's kind; the script still calls dpo --loss."""
    run = _train(
        tmp_path / "ws",
        function=km.dpo,
        model="tiny",
        dataset=str(tiny_dataset(data)),
        loss=loss,
        method="lora",
        lora_dropout=0.0,
        dtype="fp32",  # compared with the script's run to rel 2e-3: finer than one bf16 step of a loss near 1
        **PREFERENCE,
        **extra,
    )
    assert run.config.command == "dpo" and run.config.kind == loss
    script = run.to_script(tmp_path / "scripts", kind=kind)
    text = script.read_text()
    if kind == "shell":
        assert "-m kernel_magics dpo " in text and f"--loss {loss}" in text
        argv = ["bash", str(script)]
        env = {**_env(km_cache, tmp_path / "out"), "KM_PYTHON": sys.executable}
    else:
        assert "km.dpo(" in text and f"'loss': '{loss}'" in text
        argv = [sys.executable, str(script)]
        env = _env(km_cache, tmp_path / "out")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    again = json.loads((tmp_path / "out" / "config.json").read_text())
    assert again["kind"] == loss and again["arguments"]["loss"] == loss
    for name, value in extra.items():
        assert again["arguments"][name] == value
    assert len(_losses(tmp_path / "out")) == 3
    # same data, seed and arguments: the same losses up to float noise (a large lr amplifies summation order)
    assert _losses(tmp_path / "out") == pytest.approx(_losses(run.output_dir), rel=2e-3)


def _copy_run(run, folder: Path) -> Path:
    """The finished run's folder copied under another name (as a run id it came with)."""
    import shutil

    shutil.copytree(run.output_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((folder / "config.json").read_text())
    config["run_id"] = folder.name
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("kind", ["shell", "python"])
def test_a_hostile_run_id_is_quoted_not_run(finished_run, tmp_path, kind):
    """A run id such as ``r$(touch pwned)`` reaches the script as text: nothing it names is executed."""
    from kernel_magics.train.runtime.run import Run

    hostile = "r$(touch pwned)`touch pwned2`'\"\"\" import os; os.system('touch pwned3')  #"
    home = tmp_path / "home"
    home.mkdir()
    folder = _copy_run(finished_run, home / hostile)
    script = to_script(Run.load(folder), tmp_path / "s", kind=kind)
    text = script.read_text()
    if kind == "python":
        compile(text, str(script), "exec")  # still one valid Python file
    # the outputs exist already, so the script only checks them: every line that names the run id runs
    out = script.parent / f"{hostile}-repro"
    shutil_copy = __import__("shutil").copytree
    shutil_copy(finished_run.adapter_dir, out / "adapter")
    (out / "merged").mkdir()
    (out / "merged" / "config.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["KM_PYTHON"] = sys.executable
    argv = ["bash", str(script)] if kind == "shell" else [sys.executable, str(script)]
    result = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "training already done" in result.stdout and hostile in result.stdout
    made = [p.name for p in tmp_path.rglob("pwned*")]
    assert made == []


@pytest.mark.parametrize("run_id", ["../../../../sandbox/trav", "x\necho INJECTED > F #", "..", "a\\b"])
def test_a_run_id_that_is_not_a_plain_name_is_refused_before_anything_is_written(finished_run, tmp_path, run_id):
    """config.json's run id names files: a path, ``..`` or a control character is one line, nothing written."""
    from kernel_magics.errors import SwiftConfigError
    from kernel_magics.train.runtime.run import Run

    folder = tmp_path / "a" / "b" / "c" / "d" / "run"
    _copy_run(finished_run, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "run_id": run_id}))
    before = sorted(tmp_path.rglob("*"))
    for write in (
        lambda run: to_script(run, kind="shell"),
        lambda run: to_script(run, kind="python"),
        lambda run: export_script(str(folder), launcher="torchrun"),
        lambda run: export_script(str(folder), launcher="slurm"),
    ):
        with pytest.raises(SwiftConfigError, match=r"^run id .* is not a plain name") as info:
            write(Run.load(folder))
        assert "\n" not in str(info.value)
    assert sorted(tmp_path.rglob("*")) == before
