"""The result of a benchmark run: per task metrics with their standard errors, as lm-eval reports them.

A :class:`BenchmarkResult` shows as an HTML table in a notebook, turns into a DataFrame
(``.to_pandas()``: one row per task and metric) and is saved as JSON under
``<workspace>/benchmarks/`` (written to a temporary file, then renamed).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = ["model", "task", "metric", "value", "stderr", "samples"]


@dataclass
class TaskScore:
    """One metric of one task: value, standard error (NaN when lm-eval gives none) and samples scored."""

    task: str
    metric: str
    value: float
    stderr: float
    samples: int


@dataclass
class BenchmarkResult:
    """Scores of one model on lm-eval tasks, with what is needed to rerun them the same way."""

    model: str
    source: str
    scores: list[TaskScore]
    num_fewshot: int | None = None
    limit: int | float | None = None
    seed: int = 1234
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def score(self, task: str, metric: str = "acc") -> float:
        """The value of ``metric`` on ``task`` (KeyError when absent)."""
        for item in self.scores:
            if item.task == task and item.metric == metric:
                return item.value
        raise KeyError(f"{task}/{metric}")

    def to_pandas(self) -> Any:
        import pandas as pd

        rows = [{"model": self.model, **asdict(item)} for item in self.scores]
        return pd.DataFrame.from_records(rows, columns=COLUMNS)

    def to_text(self) -> str:
        lines = [f"{self.model} ({self.source}), {self.seconds:.1f} s"]
        for item in self.scores:
            lines.append(
                f"  {item.task:<24} {item.metric:<10} {_plus_minus(item.value, item.stderr)}  n={item.samples}"
            )
        if self.path is not None:
            lines.append(f"saved to {self.path}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s.task)}</td><td>{html.escape(s.metric)}</td>"
            f"<td style='text-align:right'>{_plus_minus(s.value, s.stderr)}</td>"
            f"<td style='text-align:right'>{s.samples}</td></tr>"
            for s in self.scores
        )
        saved = f"<div>saved to <code>{html.escape(str(self.path))}</code></div>" if self.path else ""
        return (
            f"<div><b>{html.escape(self.model)}</b> <small>{html.escape(self.source)}, "
            f"{self.seconds:.1f} s, few-shot {self.num_fewshot if self.num_fewshot is not None else 'task default'}"
            f"</small><table><tr><th>task</th><th>metric</th><th>value &plusmn; stderr</th><th>n</th></tr>"
            f"{rows}</table>{saved}</div>"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = None
        data["scores"] = [{k: (None if _missing(v) else v) for k, v in asdict(s).items()} for s in self.scores]
        return data

    def save(self, folder: Path) -> Path:
        """Write the result as JSON into ``folder`` atomically; remembers and returns the file's path."""
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model).strip("_") or "model"
        final = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}.json"
        handle, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(self.to_json(), out, indent=2, ensure_ascii=False, default=str)
        os.replace(tmp, final)
        self.path = final
        return final


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _plus_minus(value: float, stderr: float) -> str:
    return f"{value:.4f}" if _missing(stderr) else f"{value:.4f} ± {stderr:.4f}"


def scores_from(results: dict[str, Any], names: list[str]) -> list[TaskScore]:
    """lm-eval's ``results`` dict (``{task: {"acc,none": .., "acc_stderr,none": ..}}``) as TaskScores."""
    scores = []
    counts = results.get("n-samples", {})
    for task in names:
        numbers = results.get("results", {}).get(task, {})
        samples = int(counts.get(task, {}).get("effective", 0))
        for key, value in numbers.items():
            metric, _, filter_name = key.partition(",")
            if (
                metric.endswith("_stderr")
                or metric == "sample_len"
                or not isinstance(value, (int, float))
                or isinstance(value, bool)
            ):
                continue
            label = metric if filter_name in ("none", "") else f"{metric}[{filter_name}]"
            stderr = numbers.get(f"{metric}_stderr,{filter_name}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) else math.nan
            scores.append(TaskScore(task, label, float(value), stderr, samples))
    return scores
