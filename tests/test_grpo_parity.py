"""km.grpo and a bare TRL GRPOTrainer given the same seed and work give the same reward curve.

Both sides come from ``benchmarks/grpo_overhead.py`` (one definition of the bare-TRL side). Measured on a
shared 2-core x86 CPU: the two curves were identical (largest gap 0.0) over 6 steps; the tolerance below
leaves room for another CPU's float order (AVX2 / AVX-512 / AMX kernels) without hiding a real difference
(the rewards move by 0.02 to 0.2 per step at this learning rate).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "grpo_overhead.py"
TOLERANCE = 0.02


def benchmark_module():
    spec = importlib.util.spec_from_file_location("grpo_overhead", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_seed_and_work_give_the_same_reward_curve(tiny_model, workspace, tmp_path):
    bench = benchmark_module()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = bench.prompt_rows()
        bare = bench.in_thread(bench.bare_trl, tiny_model, rows, 6, tmp_path / "bare")
        ours = bench.km_grpo(tiny_model, rows, 6, tmp_path / "km")
    finally:
        torch.set_num_threads(before)
    print("bare", bare["rewards"], "\nkm  ", ours["rewards"])
    assert len(bare["rewards"]) == len(ours["rewards"]) == 6
    assert ours["rewards"] == pytest.approx(bare["rewards"], abs=TOLERANCE)
