"""``benchmarks/anchors.py`` in fp32 and bf16: which sides it runs, how it reads each step's loss, dtype and CPU
seconds (a km.sft step is timed by the wall time its worker logged, not by when its driver printed it), and what
the table reports from them."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import anchors  # noqa: E402 - benchmarks/ is not a package


def test_the_sides_are_km_sft_auto_then_each_dtype_then_compiled():
    options = argparse.Namespace(
        dtype="fp32,bf16", km_auto=True, km_compile=True, anchors=False, lf_python=None, swift_python=None
    )
    labels = [side.label for side in anchors.sides_to_run(options)]
    assert labels == ["km.sft auto", "km.sft fp32", "km.sft bf16", "km.sft fp32 compile", "km.sft bf16 compile"]


def test_step_lines_give_losses_dtypes_cpu_seconds_and_the_worker_s_own_times(tmp_path: Path):
    wall = time.time()
    lines = [
        "KM-RUN cold",
        f"'loss': 2.5 km_time={wall + 100}",  # the worker logged it 100 s after the child started
        f"'loss': 2.0 km_time={wall + 102}",
        f"'loss': 1.5 km_time={wall + 106}",
        f"KM-STEP-SHAPE 4x128 tokens=512 labelled=400 seconds=1.9 compute=bf16/bf16 cpu=1.8 proc=10.0 km_time={wall}",
        f"KM-STEP-SHAPE 4x128 tokens=512 labelled=400 seconds=1.9 compute=bf16/bf16 cpu=1.8 proc=11.5 km_time={wall}",
        f"KM-STEP-SHAPE 4x128 tokens=512 labelled=400 seconds=1.9 compute=bf16/bf16 cpu=1.8 proc=13.5 km_time={wall}",
    ]
    code = "import sys; print(sys.argv[1])"
    seen = anchors.timed_lines([sys.executable, "-c", code, "\n".join(lines)], anchors.child_env(), tmp_path / "log")
    timing = seen.timing()
    assert timing.losses == [2.5, 2.0, 1.5]
    assert timing.compute == {"bf16/bf16"}
    assert timing.step_cpu_s == [1.5, 2.0]
    assert timing.startup_s == pytest.approx(100, abs=1)  # the logged time, though printed within a second
    assert timing.step_s == pytest.approx([2.0, 4.0], abs=1e-3)


def test_the_table_gives_cpu_seconds_and_losses_against_the_reference(capsys):
    auto = anchors.Timing(20.0, [2.0, 2.0], None, ["4x128"] * 3, [1.9, 1.9], [1.0, 0.8], {"bf16/bf16"}, [1.0, 1.0])
    anchor = anchors.Timing(20.0, [3.0, 3.0], None, ["4x128"] * 3, [2.9, 2.9], [1.0, 0.9], {"fp32/fp32"}, [2.5, 2.5])
    anchors.table("m", {"km.sft auto": [auto], "tool fp32": [anchor]}, "rows", "km.sft auto")
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("tool fp32"))
    assert row.split()[-4:] == ["2.500", "2.50", "0.900", "0.950"]  # cpu s/step, vs ref, final loss, mean loss
    assert "fp32/fp32" in row
    assert "tool fp32 / km.sft auto median s/step, round by round: 1.50" in printed
