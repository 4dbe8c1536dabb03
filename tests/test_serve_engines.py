"""The serving-engine registry: --backend choices, backend="auto", the factories and stats readers all come
from kernel_magics.serve.engines.ENGINES."""

from __future__ import annotations

import pytest

from kernel_magics import cli
from kernel_magics.argspec import load
from kernel_magics.device import select_device
from kernel_magics.errors import SwiftConfigError, SwiftServeError
from kernel_magics.serve import engines
from kernel_magics.serve.engines import BACKENDS, ENGINES, choose, engine


def test_backend_choices_are_the_registry():
    names = [entry.name for entry in ENGINES]
    assert BACKENDS == ("auto", *names) and names[-1] == "transformers"  # the fallback that always serves
    backend = next(a for a in cli.command("serve").args if a.name == "backend")
    assert tuple(backend.choices) == BACKENDS
    for entry in ENGINES:
        assert callable(load(entry.factory)) and callable(load(entry.unavailable))
        assert entry.stats is None or callable(load(entry.stats))
    assert engine("hf") is engine(" Torch ") is engine("transformers")
    with pytest.raises(SwiftConfigError, match="backend 'vlm' is not one of auto, vllm, transformers"):
        engine("vlm")


def _not_here(device, model_dir, auto=False) -> str:  # noqa: ANN001 - an engine's availability check
    return "first is not built for this test"


def test_auto_takes_the_first_available_engine_and_says_why(tiny_model, monkeypatch):
    cpu = select_device("cpu")
    first = engines.ServingEngine("first", "kernel_magics.serve.engines.vllm:create", f"{__name__}:_not_here")
    monkeypatch.setattr(engines, "ENGINES", (first, *ENGINES[1:]))
    chosen, reason = choose("auto", cpu, tiny_model)
    assert chosen.name == "transformers" and reason == "auto: first is not built for this test"
    with pytest.raises(
        SwiftServeError, match="backend 'first' cannot serve here: first is not built.*would use transformers"
    ):
        choose("first", cpu, tiny_model)
    chosen, reason = choose("transformers", cpu, tiny_model)
    assert chosen.name == "transformers" and reason == "asked for, on cpu"


def test_vllm_stats_reader_keeps_its_per_request_series():
    from kernel_magics.serve.engines.vllm import read_stats

    text = "\n".join(
        [
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            'vllm:time_to_first_token_seconds_sum{model_name="tiny"} 0.75',
            'vllm:time_to_first_token_seconds_count{model_name="tiny"} 3.0',
            'vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="tiny"} 1.0',
            'vllm:generation_tokens_total{model_name="tiny"} 96.0',
            'vllm:gpu_cache_usage_perc{model_name="tiny"} 0.1',
            "process_cpu_seconds_total 12.0",
        ]
    )
    frame = read_stats(text)
    assert list(frame["metric"]) == [
        "vllm:time_to_first_token_seconds_sum",
        "vllm:time_to_first_token_seconds_count",
        "vllm:generation_tokens_total",
    ]
    assert list(frame["value"]) == [0.75, 3.0, 96.0]
