"""Look at a dataset before training: its rows as the trainer will see them, images included, bad rows named.

``preview(dataset)`` reads and checks every row the way ``km.sft`` will (image rows with
:func:`~kernel_magics.data.vision.prepare_vision`, text rows with :func:`~kernel_magics.data.prepare.prepare`),
but keeps the bad rows' problems instead of stopping at the first one. The notebook shows the result as
the dataset viewer (``kernel_magics.widgets.dataset_viewer``); the terminal prints a few rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DatasetPreview:
    """Checked rows of a dataset (``rows``: TRL form; image rows carry ``images`` paths) and its problems."""

    source: str
    format: str
    total: int
    rows: list[dict[str, Any]]
    labels: list[str]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    vision: bool = False

    @property
    def images(self) -> int:
        return sum(len(r.get("images") or []) for r in self.rows)

    def summary(self) -> str:
        """One line: source, format, rows, images, bad rows."""
        text = f"{self.source}: {self.total} rows, format '{self.format}'"
        if self.vision:
            text += f", {self.images} images"
        if self.problems:
            text += f", {len(self.problems)} bad"
        return text

    def turns(self, index: int) -> list[dict[str, str]]:
        """Row ``index`` as ``[{"role", "text"}]`` (image parts shown as ``[image]``)."""
        row = self.rows[index]
        if "messages" in row:
            messages = row["messages"]
        elif "prompt" in row and isinstance(row["prompt"], list):
            messages = [*row["prompt"], *row["completion"]]
        elif "prompt" in row:
            messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
        else:
            messages = [{"role": "text", "content": row.get("text", "")}]
        out = []
        for message in messages:
            content = message["content"]
            if not isinstance(content, str):
                content = "".join(p.get("text") or "" if p.get("type") == "text" else "[image] " for p in content)
            out.append({"role": message["role"], "text": content})
        return out

    def to_text(self, limit: int = 5) -> str:
        """Plain-text view for terminals."""
        lines = [self.summary()]
        for i in range(min(limit, len(self.rows))):
            lines.append(f"-- {self.labels[i]}")
            lines.extend(f"   {t['role']}: {t['text']}" for t in self.turns(i))
            lines.extend(f"   image: {p}" for p in self.rows[i].get("images") or [])
        lines.extend(f"!! {p}" for p in self.problems[:limit])
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<DatasetPreview {self.summary()}>"


def preview(dataset: Any = None, template: str = "auto", model: str | None = None) -> DatasetPreview:
    """Read and check ``dataset`` like ``km.sft`` would, keeping every bad row's problem.

    ``template`` ("auto", "vqa", "caption", "grounding", "messages") applies to image rows; ``model`` (a
    name or folder) picks the grounding box convention of that model.
    """
    from ..errors import SwiftDataError
    from .prepare import prepare
    from .vision import is_vision_dataset, prepare_vision

    model_type = None
    if model is not None:
        import json

        from ..hub import resolve_model

        try:
            model_type = json.loads((resolve_model(model) / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            model_type = None
    vision = template != "auto" or is_vision_dataset(dataset)
    try:
        if vision:
            data = prepare_vision(dataset, template=template, model_type=model_type, on_bad_rows="skip")
        else:
            data = prepare(dataset, on_bad_rows="skip")
    except SwiftDataError as exc:
        if "all" in str(exc) and "rows are bad" in str(exc):
            from .sources import read_rows

            raw = read_rows(dataset)
            return DatasetPreview(raw.source, "?", len(raw.rows), [], [], [str(exc)], vision=vision)
        raise
    return DatasetPreview(
        data.source, data.format, data.total, data.rows, data.labels, list(data.skipped), list(data.notes), vision
    )


def show_text(result: DatasetPreview) -> None:
    """Terminal display of ``%swift dataset``."""
    print(result.to_text())
