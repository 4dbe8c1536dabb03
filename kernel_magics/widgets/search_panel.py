"""The search panel shown by ``%swift search``: a query box, filters, result cards, "Use" and "Download".

The browser side is ``nbext/search_panel.js`` / ``.css`` (anywidget). It sends ``search``, ``use``,
``download`` and ``refresh`` messages; this class answers with :func:`kernel_magics.search.api.search`,
sets the default model (the core ``settings`` and the ``SwiftMagics`` trait), downloads with
:func:`kernel_magics.hub.download` or pulls new cards with
:func:`kernel_magics.search.refresh.refresh_catalog` in a background thread. Cards let through by a
relaxed filter (fewer than ``k`` passed every one) carry its name in ``relaxed`` and are drawn marked.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import anywidget
import traitlets as t

from ..config import settings
from ..errors import SwiftError
from .assets import asset

CARD_FIELDS = (
    "id",
    "family",
    "params_b",
    "active_params_b",
    "modalities",
    "tasks",
    "languages",
    "license",
    "license_verdict",
    "context_length",
    "formats",
    "release",
    "description",
    "local",
    "path",
    "score",
    "why",
    "relaxed",
)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def results_of(frame: Any) -> list[dict[str, Any]]:
    """JSON-ready result cards of a search DataFrame."""
    rows = []
    for record in frame.to_dict(orient="records"):
        rows.append({key: _plain(record.get(key)) for key in CARD_FIELDS})
    return rows


def set_default_model(model: str) -> str:
    """Make ``model`` the default for every command: ``settings`` and, in IPython, the SwiftMagics trait."""
    settings.default_model = model
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is there whenever widgets are
        return model
    shell = get_ipython()
    magics = shell.magics_manager.registry.get("SwiftMagics") if shell is not None else None
    if magics is not None:
        magics.default_model = model  # writes through to settings as well
    return model


class SearchPanel(anywidget.AnyWidget):
    """Interactive model search (the notebook view of ``km.search``)."""

    _esm = asset("search_panel.js")
    _css = asset("search_panel.css")

    query = t.Unicode("").tag(sync=True)
    k = t.Int(10).tag(sync=True)
    filters = t.Dict({}).tag(sync=True)
    results = t.List([]).tag(sync=True)
    understood = t.List([]).tag(sync=True)
    note = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    options = t.Dict({}).tag(sync=True)
    default_model = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    downloads = t.Dict({}).tag(sync=True)  # id -> "running" | "done: <path>" | "failed: <line>"
    searches = t.Int(0).tag(sync=True)  # how many searches the kernel answered (tests wait on it)
    refreshing = t.Bool(False).tag(sync=True)  # a Hub refresh is running

    def __init__(self, frame: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings: dict[str, Any] = {}  # catalog, mode, embedder... of the command that opened the panel
        self.default_model = settings.default_model
        self.options = _options()
        if frame is not None:
            self._show(frame)
        self.on_msg(self._on_message)

    # --- kernel side of the browser's requests -------------------------------------------------
    def run_search(self, query: str, filters: dict[str, Any] | None = None, k: int | None = None) -> None:
        """Search and show the results (what typing in the query box does)."""
        from ..search.api import search

        self.query = query
        self.filters = dict(filters or {})
        if k is not None:
            self.k = int(k)
        kwargs = {key: value for key, value in self.filters.items() if value not in (None, "", [])}
        kwargs.update({key: value for key, value in self._settings.items() if value is not None})
        try:
            frame = search(query or None, k=self.k, **kwargs)
        except SwiftError as exc:
            self.results, self.understood, self.note, self.error = [], [], "", str(exc)
        else:
            self._show(frame)
        self.searches += 1

    def use(self, model_id: str) -> None:
        """The "Use" button: make ``model_id`` (or its local folder) the default model."""
        card = next((r for r in self.results if r["id"] == model_id), None)
        # a local folder outside the hub cache is used by its path; hub ids resolve through the cache
        target = card["path"] if card and card.get("local") and card.get("path") and "/" not in model_id else model_id
        self.default_model = set_default_model(target)
        self.status = f"default model is now {target} (%config SwiftMagics.default_model)"

    def download(self, model_id: str, wait: bool = False) -> None:
        """The "Download" button: fetch ``model_id`` into the hub cache in a background thread."""
        from ..hub import download

        if self.downloads.get(model_id) == "running":
            return
        self.downloads = {**self.downloads, model_id: "running"}
        self.status = f"downloading {model_id}…"

        def work() -> None:
            try:
                path = download(model_id)
            except SwiftError as exc:
                outcome, message = f"failed: {exc}", str(exc)
            except Exception as exc:  # noqa: BLE001 - a thread must not die with a traceback
                outcome = message = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            else:
                outcome, message = f"done: {path}", f"{model_id} is in {path}"
            self.downloads = {**self.downloads, model_id: outcome}
            self.status = message

        thread = threading.Thread(target=work, name=f"km-download-{model_id}", daemon=True)
        thread.start()
        if wait:
            thread.join()

    def refresh(self, wait: bool = False) -> None:
        """The "Refresh from Hub" button: pull new cards (one line when offline), then search again."""
        from ..search.refresh import refresh_catalog

        if self.refreshing:
            return
        self.refreshing = True
        self.status = "pulling new model cards from the Hub…"

        def work() -> None:
            try:
                message = refresh_catalog().message
            except SwiftError as exc:
                message = str(exc)
            except Exception as exc:  # noqa: BLE001 - a thread must not die with a traceback
                message = f"refresh failed: {type(exc).__name__}: {exc}".splitlines()[0]
            self.refreshing = False
            self.run_search(self.query, self.filters, self.k)
            self.status = message

        thread = threading.Thread(target=work, name="km-refresh-catalog", daemon=True)
        thread.start()
        if wait:
            thread.join()

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        if kind == "search":
            self.run_search(str(content.get("query", "")), content.get("filters") or {}, content.get("k"))
        elif kind == "use" and content.get("id"):
            self.use(str(content["id"]))
        elif kind == "download" and content.get("id"):
            self.download(str(content["id"]))
        elif kind == "refresh":
            self.refresh()

    def _show(self, frame: Any) -> None:
        attrs = frame.attrs
        self.query = attrs.get("query", self.query) or ""
        args = attrs.get("args") or {}
        if args:
            self.k = int(args.get("k") or self.k)
            self.filters = {key: value for key, value in args.items() if key != "k" and value not in (None, [], "")}
        self._settings.update(attrs.get("settings") or {})
        self.results = results_of(frame)
        self.understood = list(attrs.get("understood") or [])
        self.note = attrs.get("note") or ""
        self.error = ""
        if attrs.get("refresh"):
            self.status = attrs["refresh"]


def _options() -> dict[str, Any]:
    from ..search.catalog import FORMATS, MODALITIES, catalog_cards

    try:
        cards = catalog_cards()  # the packaged catalog and the Hub cards of the last refresh
    except SwiftError:
        cards = []
    licenses = sorted({c["license"] for c in cards if c["license"]})
    languages = sorted({lang for c in cards for lang in c["languages"]})
    return {
        "licenses": ["commercial", "permissive", *licenses],
        "languages": languages,
        "formats": [f for f in FORMATS if f != "safetensors"],
        "modalities": [m for m in MODALITIES if m != "text"],
    }


def show(frame: Any) -> SearchPanel:
    """Notebook display of ``%swift search``: the panel prefilled with the query and its results."""
    return SearchPanel(frame)
