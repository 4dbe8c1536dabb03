"""The dashboard's "samples" tab of a GRPO run: the latest scored completions (prompt, completion, total
reward and each reward function's score), refreshed at every logged step. A short history of the mean
reward of the shown samples stays above the table, so the trend is visible without the charts.
"""

from __future__ import annotations

import html
from typing import Any

from .samples import RunSamplesPanel

_STYLE = (
    "<style>.km-grpo-samples{font-size:13px}.km-grpo-samples table{border-collapse:collapse;width:100%}"
    ".km-grpo-samples td,.km-grpo-samples th{border:1px solid var(--jp-border-color2,#ddd);padding:4px 6px;"
    "text-align:left;vertical-align:top;white-space:pre-wrap;word-break:break-word}"
    ".km-grpo-samples th{background:var(--jp-layout-color2,#f3f3f3)}.km-grpo-samples .km-good{color:#2e7d32;"
    "font-weight:600}.km-grpo-samples .km-history{color:#777;font-size:12px}</style>"
)
HISTORY = 8  # earlier steps summarised above the table


def _score(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f}"


class GRPOSamplesPanel(RunSamplesPanel):
    """A GRPO run's latest scored completions, with the mean reward of earlier steps above them."""

    event = "grpo_samples"
    css_class = "km-grpo-samples-panel"

    def _trend(self) -> str:
        points = []
        for entry in self.history[-HISTORY:]:
            scores = [s["reward"] for s in entry["samples"] if s.get("reward") is not None]
            if scores:
                points.append(f"step {entry['step']}: {sum(scores) / len(scores):.3f}")
        return "mean reward of the shown samples — " + " · ".join(points) if points else ""

    def _render(self) -> None:
        if not self.history:
            self.value = (
                _STYLE + "<div class='km-grpo-samples'>scored completions appear at the first logged step…</div>"
            )
            return
        latest = self.history[-1]
        names = list(latest["samples"][0]["rewards"]) if latest["samples"] else []
        best = max((s["reward"] for s in latest["samples"] if s.get("reward") is not None), default=None)
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        rows = []
        for sample in latest["samples"]:
            good = best is not None and sample.get("reward") == best
            cells = "".join(f"<td>{_score(sample['rewards'].get(n))}</td>" for n in names)
            rows.append(
                "<tr>"
                f"<td>{html.escape(sample['prompt'])}</td>"
                f"<td>{html.escape(sample['completion'])}</td>"
                f"<td class='{'km-good' if good else ''}'>{_score(sample.get('reward'))}</td>{cells}"
                "</tr>"
            )
        self.value = (
            _STYLE + f"<div class='km-grpo-samples'><div>completions at step <b>{latest['step']}</b></div>"
            f"<div class='km-history'>{html.escape(self._trend())}</div>"
            f"<table><tr><th>prompt</th><th>completion</th><th>reward</th>{head}</tr>"
            + "".join(rows)
            + "</table></div>"
        )
