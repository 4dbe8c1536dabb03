"""The transformers server fuzzed from its own ``/openapi.json`` with schemathesis (tiny model, loopback).

Every route gets a bounded number of generated requests (stateless); every reply must be no server
error, documented (status code, content type, body schema) and back within 30 s. The counts per route
and status are printed (``pytest -s``).
"""

from __future__ import annotations

import collections
import time

import pytest

import kernel_magics as km

pytestmark = pytest.mark.slow

EXAMPLES_PER_ROUTE = {"positive": 30, "negative": 15}  # requests the schema allows / breaking it
SLOWEST_S = 30.0


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = km.serve(
        "tiny", backend="transformers", name="schemathesis", max_model_len=64, max_choices=2, default_max_tokens=16
    )
    yield srv
    srv.stop()


class Tally:
    """Replies per (route, status), the failures found and the slowest request."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, int]] = collections.Counter()
        self.failures: list[str] = []
        self.slowest = 0.0
        self.waited = 0.0  # seconds spent waiting for replies


def _fuzzer(operation, mode, base_url: str, tally: Tally):
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    label = operation.label

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_ROUTE[mode.value],
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case) -> None:
        started = time.perf_counter()
        response = case.call(base_url=base_url, timeout=SLOWEST_S + 30)
        took = time.perf_counter() - started
        tally.slowest = max(tally.slowest, took)
        tally.waited += took
        if took > 2:
            print("SLOW", round(took, 1), str(case.body)[:300])
        tally.counts[(f"{label} ({mode.value})", response.status_code)] += 1
        if took > SLOWEST_S:
            tally.failures.append(f"{label}: {took:.1f} s")
        try:
            case.validate_response(response, checks=checks)
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises an exception group per failure
            tally.failures.append(f"{label} -> {response.status_code}: {str(exc)[:400]}")

    return fuzz


def test_every_route_answers_as_its_schema_says(server):
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    tally = Tally()
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzzer(result.ok(), mode, server.base_url, tally)()
            except Unsatisfiable:  # a route without inputs has no invalid request
                assert mode is GenerationMode.NEGATIVE and not result.ok().path.endswith("}")
    counts = tally.counts
    print(
        f"\nschemathesis: {sum(counts.values())} requests, slowest {tally.slowest:.2f} s, {tally.waited:.1f} s in all"
    )
    for (label, status), count in sorted(counts.items()):
        print(f"  {label:39} {status}: {count}")
    assert not tally.failures, "\n".join(tally.failures[:5])
    assert not [key for key in counts if key[1] >= 500]
    routes = {label.split(" (")[0] for label, _ in counts}
    assert {"POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models", "GET /metrics"} <= routes
    assert counts[("POST /v1/chat/completions (positive)", 200)] > 0
    assert counts[("POST /v1/completions (positive)", 200)] > 0
    assert counts[("POST /v1/chat/completions (negative)", 400)] > 0
