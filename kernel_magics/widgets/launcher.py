"""``%swift`` alone (and ``km.launcher()``): a panel of the actions, each a form made from the argument spec.

Tabs: find a model (the search panel; "Use" fills the forms' model), download, fine-tune (one form per
training method of :mod:`kernel_magics.train.methods.registry`, and vision-language SFT), serve & chat, merge &
export, evaluate, runs. A tab's forms are built when it is first opened. Every form's "Run" executes the
same ``%swift`` cell its "Insert cell" writes below the launcher's cell (see :mod:`.launcher_forms`).
"""

from __future__ import annotations

import dataclasses
import html
import itertools
from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets as W
import traitlets as t

from .assets import asset
from .launcher_forms import CommandForm
from .launcher_i18n import check_language, default_language, word

SERVED_ADAPTER = "tuned"  # the name a run's adapter is served under from the serve & chat tab
# action tab -> the subcommands whose forms it holds (the training methods are added from their registry)
ACTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("find", ()),
    ("download", ("download",)),
    ("finetune", ()),
    ("serve", ("serve", "chat")),
    ("merge", ("merge", "export")),
    ("evaluate", ("eval",)),
    ("runs", ()),
)


class CellBridge(anywidget.AnyWidget):
    """Inserts a cell below the launcher's cell through the front end (``nbext/launcher.js``)."""

    _esm = asset("launcher.js")
    _css = asset("launcher.css")
    host = t.Unicode("").tag(sync=True)  # model id of the widget whose cell gets the new cells below it

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pending: dict[int, Callable[[bool], None]] = {}
        self._ids = itertools.count(1)
        self.on_msg(self._on_message)

    def insert(self, text: str, done: Callable[[bool], None]) -> None:
        """Ask the front end to insert ``text`` as a code cell; ``done(ok)`` is called with its answer."""
        ident = next(self._ids)
        self._pending[ident] = done
        self.send({"type": "insert", "id": ident, "text": text})

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("type") == "inserted":
            done = self._pending.pop(int(content.get("id", 0)), None)
            if done is not None:
                done(bool(content.get("ok")))


def vision_knobs() -> tuple[str, ...]:
    """The knobs the vision-language SFT form shows first: those the SFT command's dataclass adds to its base."""
    from .. import cli
    from ..argspec import load
    from ..train.methods.registry import method

    cls = load(method("sft").arguments)
    base = next((b for b in cls.__mro__[1:] if dataclasses.is_dataclass(b)), None)
    inherited = {f.name for f in dataclasses.fields(base)} if base else set()
    names = {a.name for a in cli.command("sft").args}
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in inherited and f.name in names)


class Launcher(W.VBox):
    """The launcher panel. ``forms`` holds the forms built so far, by title ("sft", "vlm", "serve"...)."""

    def __init__(self, language: str | None = None) -> None:
        self.language = check_language(language or notebook_language())
        self.bridge = CellBridge()
        self.forms: dict[str, CommandForm] = {}
        self.search: Any = None
        self._builders: dict[int, Callable[[], W.Widget]] = {}
        self.tabs = W.Tab()
        children, titles = [], []
        for index, (key, _names) in enumerate(ACTIONS):
            children.append(W.VBox())
            titles.append(word(key, self.language))
            self._builders[index] = getattr(self, f"_build_{key}", None) or self._forms_builder(key)
        self.tabs.children = children
        self.tabs.titles = tuple(titles)
        self.tabs.observe(self._on_tab, names="selected_index")
        self.status = W.HTML()
        title = W.HTML(f"<div class='km-launcher-title'>{word('title', self.language)}</div>")
        super().__init__([title, self.tabs, self.status, self.bridge])
        self.add_class("km-launcher")
        self.bridge.host = self.model_id
        self.show_action("finetune")

    # -- tabs ---------------------------------------------------------------------------------------
    def show_action(self, key: str) -> W.Widget:
        """Select the action tab ``key`` ("find", "finetune", ...), building it on first use."""
        index = [k for k, _ in ACTIONS].index(key)
        self._build(index)
        self.tabs.selected_index = index
        return self.tabs.children[index]

    def _on_tab(self, change: Any) -> None:
        if change["new"] is not None:
            self._build(change["new"])

    def _build(self, index: int) -> None:
        builder = self._builders.pop(index, None)
        if builder is None:
            return
        children = list(self.tabs.children)
        children[index] = builder()
        self.tabs.children = children

    def form(self, name: str, promoted: tuple[str, ...] = (), title: str | None = None) -> CommandForm:
        """The form of subcommand ``name`` (built once)."""
        from .. import cli

        key = title or name
        if key not in self.forms:
            initial = (
                {"model": self.search.default_model} if self.search is not None and self.search.default_model else {}
            )
            command = cli.command(name)
            initial = {k: v for k, v in initial.items() if k in {a.name for a in command.args}}
            self.forms[key] = CommandForm(command, self.language, promoted, self.bridge.insert, initial, key)
            if self.forms[key].trains:
                self.forms[key].after_run = self._offer_serving
        return self.forms[key]

    def _forms_builder(self, key: str) -> Callable[[], W.Widget]:
        names = dict(ACTIONS)[key]

        def build() -> W.Widget:
            forms = [self.form(name) for name in names]
            if len(forms) == 1:
                return forms[0]
            tabs = W.Tab(children=forms, titles=names)
            return tabs

        return build

    def _build_finetune(self) -> W.Widget:
        from ..train.methods.registry import METHODS

        titles = [entry.name for entry in METHODS]
        forms = [self.form(name) for name in titles]
        forms.append(self.form("sft", promoted=vision_knobs(), title="vlm"))
        labels = [word(name, self.language) if name in ("sft", "dpo", "grpo") else name for name in titles]
        return W.Tab(children=forms, titles=(*labels, word("vlm", self.language)))

    def _build_find(self) -> W.Widget:
        from .search_panel import SearchPanel

        self.search = SearchPanel()
        self.search.observe(self._on_use, names="default_model")
        return self.search

    def _build_runs(self) -> W.Widget:
        from .launcher_runs import RunsPanel

        return RunsPanel(self.language)

    def _offer_serving(self, form: CommandForm, result: Any) -> None:
        """A training run started from a form: the serve form gets its base model and its adapter (named
        :data:`SERVED_ADAPTER`), the chat form that name, so serving and chatting with it need no typing."""
        from ..config import settings

        adapter = getattr(getattr(result, "run", result), "adapter_dir", None)
        if adapter is None:
            return
        base = str(form.kwargs().get("model") or settings.default_model)
        serve, chat = self.form("serve"), self.form("chat")
        if form.kwargs().get("method") == "full":  # the run's folder holds a whole model, no adapter
            serve.set_value("model", str(adapter))
            serve.set_value("adapters", "")
            chat.set_value("model", "")
        else:
            serve.set_value("model", base)
            serve.set_value("adapters", f"{SERVED_ADAPTER}={adapter}")
            chat.set_value("model", SERVED_ADAPTER)
        self.status.value = (
            f"<small>{word('serve_ready', self.language)}<code>{html.escape(str(adapter))}</code></small>"
        )

    def _on_use(self, change: Any) -> None:
        """The search panel's "Use": the picked model goes into every form that takes a model."""
        for form in self.forms.values():
            form.set_value("model", change["new"])
        self.status.value = f"<small>{word('use_model', self.language)}<code>{change['new']}</code></small>"


def notebook_language() -> str:
    """``%config SwiftMagics.language`` in IPython; the locale's language elsewhere."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is there whenever widgets are
        return default_language()
    shell = get_ipython()
    magics = shell.magics_manager.registry.get("SwiftMagics") if shell is not None else None
    return getattr(magics, "language", None) or default_language()


def launcher(language: str | None = None) -> Launcher:
    """The launcher panel (``%swift`` with no arguments): ``language`` "en" or "zh" (default: the
    ``SwiftMagics.language`` setting, else the locale's)."""
    return Launcher(language)
