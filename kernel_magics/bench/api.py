"""Benchmarks on lm-eval tasks: ``km.evaluate(model, tasks=[...])`` and ``km.compare_benchmarks``.

::

    import kernel_magics as km
    base = km.evaluate("smollm2", tasks=["km_general_en"])                 # BenchmarkResult
    tuned = km.evaluate("smollm2", tasks=["km_general_en"], adapter="runs/<id>/adapter")
    km.evaluate("http://127.0.0.1:8000", tasks=["km_general_en"], served_model="smollm2")
    km.compare_benchmarks(base, [tuned])                                    # one table, drops flagged

``compare_benchmarks`` takes models or finished results; every model runs with the same seed and
few-shot settings. The difference of two scores has the standard error ``sqrt(se_a² + se_b²)``; a drop
larger than twice that is flagged.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SwiftUsageError
from .harness import DEFAULT_SEED, RunOptions, benchmark_model, benchmark_server, is_server_url
from .registry import benchmark_tasks
from .results import BenchmarkResult

__all__ = ["BenchmarkComparison", "BenchmarkResult", "benchmark", "benchmark_tasks", "compare_benchmarks"]

DROP_STDERRS = 2.0


def benchmark(
    model: Any,
    tasks: Sequence[str] | str,
    adapter: Any = None,
    limit: Any = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    seed: int = DEFAULT_SEED,
    served_model: str | None = None,
    tokenizer: Any = None,
    save: bool = True,
) -> Any:
    """lm-eval ``tasks`` on one model (a :class:`BenchmarkResult`) or several (a :class:`BenchmarkComparison`,
    the first model as the baseline). ``model`` may be a server URL (then ``served_model``, ``tokenizer``)."""
    from ..export.loading import model_specs

    options = RunOptions(limit=limit, num_fewshot=num_fewshot, batch_size=batch_size, seed=seed, save=save)
    if is_server_url(model):
        if adapter is not None:
            raise SwiftUsageError("adapter= applies to local models; a served adapter is chosen by served_model=")
        return benchmark_server(model, tasks, served_model, tokenizer, options)
    if served_model is not None:
        raise SwiftUsageError("served_model= needs a server URL as the model, e.g. http://127.0.0.1:8000")
    specs = model_specs(model, adapter)
    results = [benchmark_model(spec, tasks, options) for spec in specs]
    return results[0] if len(results) == 1 else BenchmarkComparison(results[0], results[1:])


def compare_benchmarks(
    base: Any,
    others: Sequence[Any] | Any,
    tasks: Sequence[str] | str | None = None,
    limit: Any = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    seed: int = DEFAULT_SEED,
) -> BenchmarkComparison:
    """Benchmark ``base`` and each of ``others`` on ``tasks`` with the same seed and few-shot settings.

    Each of them is a model (name, folder, adapter folder, run, ``(base, adapter)`` pair, server URL) or a
    :class:`BenchmarkResult` already computed (then it is not rerun).
    """
    items = list(others) if isinstance(others, (list, tuple)) else [others]
    if not items:
        raise SwiftUsageError("compare_benchmarks needs at least one model to compare with the base")
    needs_run = [m for m in [base, *items] if not isinstance(m, BenchmarkResult)]
    if needs_run and not tasks:
        raise SwiftUsageError("compare_benchmarks needs tasks=[...] for the models it runs")
    options = dict(limit=limit, num_fewshot=num_fewshot, batch_size=batch_size, seed=seed)

    def run(model: Any) -> BenchmarkResult:
        return model if isinstance(model, BenchmarkResult) else benchmark(model, tasks, **options)

    return BenchmarkComparison(run(base), [run(m) for m in items])


@dataclass
class BenchmarkComparison:
    """A baseline and other models on the same tasks: scores side by side, differences, flagged drops."""

    base: BenchmarkResult
    others: list[BenchmarkResult]

    @property
    def results(self) -> list[BenchmarkResult]:
        return [self.base, *self.others]

    def labels(self) -> list[str]:
        """Column names: the models' labels, made unique."""
        labels: list[str] = []
        for result in self.results:
            label = result.model
            while label in labels:
                label += "'"
            labels.append(label)
        return labels

    def to_pandas(self) -> Any:
        """One row per task and metric: a column per model, then ``Δ label``, ``Δ label stderr`` and
        ``Δ label drop`` (True when the drop exceeds twice the difference's stderr) per other model."""
        import pandas as pd

        labels = self.labels()
        keys = [(s.task, s.metric) for s in self.base.scores]
        rows = []
        for task, metric in keys:
            row: dict[str, Any] = {"task": task, "metric": metric}
            base_value, base_err = _lookup(self.base, task, metric)
            row[labels[0]] = base_value
            for label, result in zip(labels[1:], self.others, strict=True):
                value, err = _lookup(result, task, metric)
                diff, diff_err = value - base_value, math.sqrt(base_err**2 + err**2)
                row[label] = value
                row[f"Δ {label}"] = diff
                row[f"Δ {label} stderr"] = diff_err
                row[f"Δ {label} drop"] = bool(diff_err > 0 and -diff > DROP_STDERRS * diff_err)
            rows.append(row)
        return pd.DataFrame.from_records(rows)

    def drops(self) -> list[tuple[str, str, str]]:
        """(model, task, metric) of every flagged drop."""
        frame = self.to_pandas()
        found = []
        for label in self.labels()[1:]:
            for _, row in frame[frame[f"Δ {label} drop"]].iterrows():
                found.append((label, row["task"], row["metric"]))
        return found

    def figure(self, metric: str = "acc") -> Any:
        """A Plotly bar chart of ``metric`` per task, a bar per model with its stderr as error bar."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for label, result in zip(self.labels(), self.results, strict=True):
            picked = [s for s in result.scores if s.metric == metric]
            fig.add_bar(
                name=label,
                x=[s.task for s in picked],
                y=[s.value for s in picked],
                error_y=dict(type="data", array=[0 if math.isnan(s.stderr) else s.stderr for s in picked]),
            )
        fig.update_layout(barmode="group", yaxis_title=metric, title=f"{metric} per task", height=360)
        return fig

    def to_text(self) -> str:
        return self.to_pandas().to_string(index=False, float_format=lambda v: f"{v:.4f}")

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        labels = self.labels()
        frame = self.to_pandas()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["task", "metric", *labels])
        head += "".join(f"<th>&Delta; {html.escape(label)}</th>" for label in labels[1:])
        body = ""
        for _, row in frame.iterrows():
            cells = [html.escape(str(row["task"])), html.escape(str(row["metric"]))]
            cells += [f"{row[label]:.4f}" for label in labels]
            for label in labels[1:]:
                text = f"{row[f'Δ {label}']:+.4f} ± {row[f'Δ {label} stderr']:.4f}"
                cells.append(f"<b style='color:#c62828'>{text} drop</b>" if row[f"Δ {label} drop"] else text)
            body += "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        note = f"a drop is flagged when it exceeds {DROP_STDERRS:g} standard errors of the difference"
        return f"<div><table><tr>{head}</tr>{body}</table><small>{note}</small></div>"


def _lookup(result: BenchmarkResult, task: str, metric: str) -> tuple[float, float]:
    for score in result.scores:
        if score.task == task and score.metric == metric:
            return score.value, (0.0 if math.isnan(score.stderr) else score.stderr)
    raise SwiftUsageError(f"{result.model} has no {metric} on {task}; compare results of the same tasks")
