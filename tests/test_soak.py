"""The bounded soak of benchmarks/soak.py as a test: 64 clients for 60 s of mixed traffic on loopback,
zero hangs, zero unexpected 5xx, bounded memory growth (``-m slow``: it takes a minute and more)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _soak_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("km_soak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_64_clients_for_60_seconds(tiny_model):
    soak = _soak_module()
    figures = soak.soak(clients=64, seconds=60, hang_s=60)
    print("\n".join(soak.report(figures, 64, 60)))
    assert soak.failures(figures, max_growth_mb=256) == []
    assert all(figures["latency"][kind] for kind in ("normal", "streaming", "leaving", "malformed"))
