"""The dashboard's "samples" tab of a vision-language run: a few rows' images, the expected answer and the
model's current answer, refreshed when the run publishes new samples (before training and a few times
during it). Earlier answers stay visible below the latest ones, so progress is easy to see.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..train.runtime.samples import read_samples
from .dataset_viewer import thumbnail

_STYLE = (
    "<style>.km-samples{font-size:13px}.km-samples table{border-collapse:collapse;width:100%}"
    ".km-samples td,.km-samples th{border:1px solid var(--jp-border-color2,#ddd);padding:4px 6px;text-align:left;"
    "vertical-align:top;white-space:pre-wrap;word-break:break-word}"
    ".km-samples th{background:var(--jp-layout-color2,#f3f3f3)}.km-samples img{max-width:96px;max-height:96px}"
    ".km-samples .km-hit{color:#2e7d32;font-weight:600}.km-samples .km-history{color:#777;font-size:12px}</style>"
)


class RunSamplesPanel(W.HTML):
    """A run's published samples (``samples.jsonl``, then every ``event`` the run emits), drawn by ``_render``."""

    event = "samples"  # the run's event that carries a new entry
    css_class = "km-samples-panel"

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.add_class(self.css_class)
        self.run = run
        self.history: list[dict[str, Any]] = read_samples(run.output_dir)
        self._unsubscribe = run.subscribe(self._on_event)
        self._render()

    def _on_event(self, event: str, payload: Any) -> None:
        if event == self.event:
            self.history.append(payload)
            self._render()

    def _render(self) -> None:  # pragma: no cover - each panel draws its own
        raise NotImplementedError

    def close(self) -> None:
        self._unsubscribe()
        super().close()


class SamplesPanel(RunSamplesPanel):
    """A vision-language run's latest answers on a few images, with earlier steps' answers beneath."""

    def __init__(self, run: Any) -> None:
        self._thumbs: dict[str, str] = {}
        super().__init__(run)

    def _thumb(self, path: str) -> str:
        if path not in self._thumbs:
            try:
                self._thumbs[path] = thumbnail(path, 96)[0]
            except OSError:
                self._thumbs[path] = ""
        return self._thumbs[path]

    def _render(self) -> None:
        if not self.history:
            self.value = _STYLE + "<div class='km-samples'>samples appear when training starts…</div>"
            return
        latest = self.history[-1]
        earlier = {}  # label -> [(step, answer)] before the latest
        for entry in self.history[:-1]:
            for sample in entry["samples"]:
                earlier.setdefault(sample["label"], []).append((entry["step"], sample["answer"]))
        rows = []
        for sample in latest["samples"]:
            images = "".join(
                f"<img src='{self._thumb(p)}' title='{html.escape(p)}' alt='image'>" for p in sample["images"]
            )
            hit = sample["answer"].strip() == sample["expected"].strip()
            past = "".join(
                f"<div>step {step}: {html.escape(answer)}</div>" for step, answer in earlier.get(sample["label"], [])
            )
            rows.append(
                "<tr>"
                f"<td>{images}<div class='km-history'>{html.escape(sample['label'])}</div></td>"
                f"<td>{html.escape(sample['question'])}</td>"
                f"<td>{html.escape(sample['expected'])}</td>"
                f"<td class='{'km-hit' if hit else ''}'>{html.escape(sample['answer'])}"
                f"<div class='km-history'>{past}</div></td>"
                "</tr>"
            )
        self.value = (
            _STYLE + f"<div class='km-samples'><div>answers at step <b>{latest['step']}</b></div>"
            "<table><tr><th>image</th><th>question</th><th>expected</th><th>model</th></tr>"
            + "".join(rows)
            + "</table></div>"
        )
