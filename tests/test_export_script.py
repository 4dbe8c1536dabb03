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
from kernel_magics.export.script import export_script, to_script
from kernel_magics.testing import tiny_dataset

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
