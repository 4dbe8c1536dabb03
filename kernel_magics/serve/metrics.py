"""Per-request timing: time to first token and tokens/s, as a DataFrame and as Prometheus text."""

from __future__ import annotations

from typing import Any

from .engines.base import Engine, RequestRecord

COLUMNS = [
    "request_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "ttft_s",
    "e2e_s",
    "tokens_per_s",
    "finish_reason",
    "batch_size",
    "stream",
]
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def records_frame(records: list[RequestRecord]) -> Any:
    """One row per finished request (``ttft_s``, ``e2e_s``, ``tokens_per_s``, ...)."""
    import pandas as pd

    return pd.DataFrame([r.row() for r in records], columns=COLUMNS)


def prometheus_text(engine: Engine) -> str:
    """Counters and a TTFT histogram per served model, in the Prometheus text format."""
    records = engine.records()
    lines = [
        "# HELP km_requests_total Finished requests.",
        "# TYPE km_requests_total counter",
    ]
    by_model: dict[str, list[RequestRecord]] = {name: [] for name in engine.models}
    for record in records:
        by_model.setdefault(record.model, []).append(record)
    for model, items in by_model.items():
        lines.append(f'km_requests_total{{model="{_label(model)}"}} {len(items)}')
    for metric, attr, help_text in (
        ("km_prompt_tokens_total", "prompt_tokens", "Prompt tokens processed."),
        ("km_generation_tokens_total", "completion_tokens", "Tokens generated."),
    ):
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        for model, items in by_model.items():
            lines.append(f'{metric}{{model="{_label(model)}"}} {sum(getattr(r, attr) for r in items)}')
    lines += [
        "# HELP km_time_to_first_token_seconds Time from arrival to the first generated token.",
        "# TYPE km_time_to_first_token_seconds histogram",
    ]
    for model, items in by_model.items():
        label = _label(model)
        values = [r.ttft_s for r in items if r.ttft_s is not None]
        for bound in TTFT_BUCKETS:
            count = sum(1 for v in values if v <= bound)
            lines.append(f'km_time_to_first_token_seconds_bucket{{model="{label}",le="{bound}"}} {count}')
        lines.append(f'km_time_to_first_token_seconds_bucket{{model="{label}",le="+Inf"}} {len(values)}')
        lines.append(f'km_time_to_first_token_seconds_sum{{model="{label}"}} {sum(values):.6f}')
        lines.append(f'km_time_to_first_token_seconds_count{{model="{label}"}} {len(values)}')
    lines += [
        "# HELP km_tokens_per_second_last Generation speed of the latest request (tokens/s, end to end).",
        "# TYPE km_tokens_per_second_last gauge",
    ]
    for model, items in by_model.items():
        value = items[-1].tokens_per_s if items else 0.0
        lines.append(f'km_tokens_per_second_last{{model="{_label(model)}"}} {value:.3f}')
    waiting = getattr(engine, "pending", None)
    if callable(waiting):
        lines += ["# HELP km_requests_waiting Requests queued for a batch.", "# TYPE km_requests_waiting gauge"]
        lines.append(f"km_requests_waiting {waiting()}")
    return "\n".join(lines) + "\n"


def parse_prometheus(text: str, prefix: str = "") -> Any:
    """Prometheus text -> DataFrame(metric, labels, value), keeping metrics that start with ``prefix``."""
    import pandas as pd

    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#") or not line.startswith(prefix):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            rows.append({"metric": name, "labels": labels.rstrip("}"), "value": float(value)})
        except ValueError:
            continue
    return pd.DataFrame(rows, columns=["metric", "labels", "value"])


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
