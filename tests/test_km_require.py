"""KM_REQUIRE turns "optional component missing" skips into failures, and skip reasons say what is missing.

Runs pytest in a subprocess on the GPTQ / AWQ export test, which needs CUDA plus gptqmodel / llm-compressor.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TARGET = "tests/test_export_quantized.py::test_gptq_awq_export_on_gpu"

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available() or importlib.util.find_spec("llmcompressor") is not None,
    reason="checks the messages of a machine without CUDA and without llm-compressor",
)


def run_pytest(require: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KM_REQUIRE"}
    if require is not None:
        env["KM_REQUIRE"] = require
    command = [sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_missing_components_skip_and_say_why():
    result = run_pytest(None, TARGET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout
    if torch.version.cuda is None:
        assert f"torch {torch.__version__} is a CPU build" in result.stdout
    assert "needs gptq: import gptqmodel failed" in result.stdout and "needs awq: import llmcompressor" in result.stdout


def test_required_components_fail_instead():
    result = run_pytest("awq", TARGET)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 skipped, 1 error" in result.stdout  # fails in setup, before the test body
    assert "KM_REQUIRE names awq, which is missing: import llmcompressor failed" in result.stdout


def test_the_header_says_what_is_required():
    result = run_pytest("awq,real", "-v", "--collect-only", TARGET)  # -v undoes -q, which hides the header
    assert "KM_REQUIRE: awq, real" in result.stdout, result.stdout + result.stderr
