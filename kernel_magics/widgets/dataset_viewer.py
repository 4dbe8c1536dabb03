"""The dataset viewer: rows as the trainer will see them, with their images, a page at a time; bad rows
listed with their problem.

Thumbnails are made on the kernel side for the visible page only (at most ``THUMB_SIDE`` pixels a side,
PNG data URLs), so a dataset of thousands of images costs nothing until its pages are opened.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import anywidget
import traitlets

from ..data.preview import DatasetPreview, preview
from .assets import asset

THUMB_SIDE = 160


def thumbnail(path: str, side: int = THUMB_SIDE) -> tuple[str, str]:
    """A PNG data URL of the image at ``path`` (scaled to at most ``side`` pixels a side) and its "WxH"."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), f"{width}x{height}"


class DatasetViewer(anywidget.AnyWidget):
    """A page of rows (``rows``), paging (``page``/``pages``) and the bad rows (``problems``)."""

    _esm = traitlets.Unicode(asset("dataset_viewer.js")).tag(sync=True)
    _css = traitlets.Unicode(asset("dataset_viewer.css")).tag(sync=True)

    summary = traitlets.Unicode("").tag(sync=True)
    notes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    rows = traitlets.List().tag(sync=True)  # [{label, turns: [{role, text}], images: [{src, size, path}]}]
    problems = traitlets.List(traitlets.Unicode()).tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    pages = traitlets.Int(1).tag(sync=True)
    page_size = traitlets.Int(8).tag(sync=True)

    def __init__(self, data: DatasetPreview, page_size: int = 8, **kwargs: Any) -> None:
        self.data = data
        pages = max(1, -(-len(data.rows) // max(1, page_size)))
        super().__init__(
            summary=data.summary(),
            notes=list(data.notes),
            problems=list(data.problems[:200]),
            page_size=page_size,
            pages=pages,
            **kwargs,
        )
        self.observe(self._render_page, names=["page"])
        self._render_page()

    def _render_page(self, change: Any = None) -> None:
        page = min(max(0, self.page), self.pages - 1)
        if page != self.page:
            self.page = page  # re-enters through the observer
            return
        start = page * self.page_size
        rows = []
        for index in range(start, min(start + self.page_size, len(self.data.rows))):
            images = []
            for path in self.data.rows[index].get("images") or []:
                try:
                    src, size = thumbnail(path)
                except OSError as exc:  # removed since the check: say so in place of the picture
                    src, size = "", f"unreadable: {exc}"
                images.append({"src": src, "size": size, "path": str(path)})
            rows.append({"label": self.data.labels[index], "turns": self.data.turns(index), "images": images})
        self.rows = rows

    def __repr__(self) -> str:
        return f"<DatasetViewer {self.summary}; page {self.page + 1}/{self.pages}>"


def show(result: DatasetPreview) -> DatasetViewer:
    """Notebook display of ``%swift dataset``."""
    return DatasetViewer(result)


def view_dataset(dataset: Any, template: str = "auto", model: str | None = None, page_size: int = 8) -> DatasetViewer:
    """``DatasetViewer`` of ``dataset`` (same arguments as ``%swift dataset``)."""
    return DatasetViewer(preview(dataset, template=template, model=model), page_size=page_size)
