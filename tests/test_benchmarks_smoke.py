"""Every benchmark in benchmarks/ runs with ``--smoke`` (tiny sizes) and exits 0, so none rots unnoticed.

The list is the folder's ``*.py`` files (those starting with ``_`` are shared helpers), so a new benchmark
is included without touching this file. The figures printed are not checked: speed is not a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# gpu_check's dry run has its own test, which also checks every section of its report (tests/test_gpu_check.py)
BENCHMARKS = sorted(
    p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_") and p.name != "gpu_check.py"
)


def test_the_benchmarks_folder_is_found():
    assert len(BENCHMARKS) >= 5, BENCHMARKS


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_runs_with_smoke(script: Path, tmp_path: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    env["KERNEL_MAGICS_CACHE_DIR"] = str(tmp_path / "cache")  # tiny models built here, not in the user's cache
    env["KERNEL_MAGICS_WORKSPACE"] = str(tmp_path / "workspace")
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,  # a few seconds of work each, but machines running the suite in parallel can be slow
    )
    output = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, f"{script.name} --smoke exited {result.returncode}:\n{output}"
    assert result.stdout.strip(), f"{script.name} --smoke printed nothing:\n{output}"
