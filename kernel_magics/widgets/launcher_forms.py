"""One launcher form: a widget per argument of a :class:`~kernel_magics.argspec.Command`, the live plan for
training commands, and "Run" / "Insert cell", which both use the same ``%swift`` cell.

"Run" executes that cell's magic in this kernel (``run_cell_magic``), so the job started and the cell left
behind are one call; its output (a training run's dashboard) appears under the form.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W

from ..argspec import Arg, Command
from ..errors import SwiftError
from .launcher_cell import PLAN_KNOBS, Cell, cell_for, default_text, kwargs_from, plan_for, split_fields
from .launcher_i18n import arg_help, arg_label, word
from .launcher_plan_words import plan_free, plan_head, plan_reason

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MODEL_SUGGESTIONS = ("tiny", "smollm2", "tiny-llama")


def dataset_choices(folder: Path | None = None) -> list[str]:
    """Data files in the notebook's folder (two levels down), then the packaged ones (``tiny_dataset``)."""
    from ..testing import DATASETS, tiny_dataset

    root = Path(folder or os.getcwd())
    found: list[str] = []
    for pattern in ("*", "*/*"):
        for path in sorted(root.glob(pattern)):
            if path.suffix in DATA_SUFFIXES and path.is_file() and not path.name.startswith("."):
                found.append(str(path.relative_to(root)))
    return found[:200] + [str(tiny_dataset(kind)) for kind in DATASETS]


def model_choices() -> list[str]:
    from ..config import settings

    return list(dict.fromkeys([*MODEL_SUGGESTIONS, *([settings.default_model] if settings.default_model else [])]))


def _tri_state(arg: Arg, language: str) -> W.Dropdown:
    shown = f"{word('default', language)}: {default_text(arg) or '-'}"
    # "" is the default (None would mean no selection to the widget); "true" / "false" convert like the flag
    return W.Dropdown(options=[(shown, ""), ("on", "true"), ("off", "false")], value="")


def field_widget(arg: Arg, language: str) -> W.Widget:
    """The input of one argument: a choice list, a check box, a model or dataset picker, or a text box.
    Text reaches the kernel when the field is left or Enter pressed, so the plan follows a finished name
    (never a request per key pressed)."""
    layout = W.Layout(width="340px")
    if arg.flag:
        if arg.default is None:
            return _tri_state(arg, language)
        return W.Checkbox(value=bool(arg.default), indent=False)
    if arg.choices is not None:
        options = [(str(c), str(c)) for c in arg.choices]
        if arg.default is None:
            return W.Dropdown(options=[(f"{word('default', language)}: {default_text(arg) or '-'}", "")] + options,
                              value="", layout=layout)  # fmt: skip
        return W.Dropdown(options=options, value=str(arg.default), layout=layout)
    placeholder = default_text(arg) if arg.default is None else ""
    if arg.name == "model" or arg.name == "dataset":
        choices = model_choices() if arg.name == "model" else dataset_choices()
        return W.Combobox(
            options=choices, placeholder=placeholder, ensure_option=False, layout=layout, continuous_update=False
        )
    if arg.multiple:
        return W.Textarea(
            placeholder=placeholder or "NAME=VALUE",
            layout=W.Layout(width="340px", height="48px"),
            continuous_update=False,
        )
    value = default_text(arg) if arg.default is not None else ""
    return W.Text(value=value, placeholder=placeholder, layout=layout, continuous_update=False)


class CommandForm(W.VBox):
    """The form of one command: common fields, the rest under "more", the plan, Run and Insert cell."""

    def __init__(
        self,
        command: Command,
        language: str = "en",
        promoted: Sequence[str] = (),
        insert_cell: Callable[[str, Callable[[bool], None]], None] | None = None,
        initial: dict[str, Any] | None = None,
        title: str | None = None,
    ) -> None:
        self.command, self.language = command, language
        self.common, self.more = split_fields(command, promoted)
        self.inputs: dict[str, W.Widget] = {a.name: field_widget(a, language) for a in command.args}
        for name, value in (initial or {}).items():
            self.inputs[name].value = value
        self._insert_cell = insert_cell
        self.after_run: Callable[[CommandForm, Any], None] | None = None  # told what each Run returned
        self.output = W.Output()
        self.message = W.HTML()
        self.plan_box = W.HTML()
        self.preview_out = W.Output()
        self._plan_generation = 0
        self._plan_thread: threading.Thread | None = None
        more_box = W.VBox([self._row(a) for a in self.more])
        self.more_panel = W.Accordion(children=[more_box], titles=(f"{word('more', language)} ({len(self.more)})",))
        self.more_panel.selected_index = None
        run = W.Button(description=word("run", language), button_style="primary", icon="play")
        insert = W.Button(description=word("insert", language), icon="plus")
        run.on_click(lambda _b: self.run())
        insert.on_click(lambda _b: self.insert())
        run.add_class("km-launcher-run")
        insert.add_class("km-launcher-insert")
        self.plan_box.add_class("km-launcher-plan")
        self.message.add_class("km-launcher-message")
        rows = [self._row(a) for a in self.common]
        parts: list[W.Widget] = [*rows, self.preview_out]
        if self.more:
            parts.append(self.more_panel)
        if self.trains:
            parts.append(self.plan_box)
            for name in PLAN_KNOBS:
                if name in self.inputs:
                    self.inputs[name].observe(lambda _c: self.refresh_plan(), names="value")
        parts += [W.HBox([run, insert]), self.message, self.output]
        super().__init__(parts)
        self.add_class("km-launcher-form")
        self.add_class(f"km-form-{title or command.name}")
        if self.trains:
            self.refresh_plan()

    @property
    def trains(self) -> bool:
        return self.command.notebook == "kernel_magics.widgets.dashboard:show"

    def _row(self, arg: Arg) -> W.Widget:
        label = W.Label(arg_label(arg.name, self.language), layout=W.Layout(flex="0 0 150px"))
        label.tooltip = arg.help
        label.add_class("km-field-label")
        help_text = html.escape(arg_help(arg.name, arg.help, self.language))
        if arg.default not in (None, "", [], ()) or arg.default_help:
            help_text += f" <i>[{word('default', self.language)}: {html.escape(default_text(arg))}]</i>"
        extra: list[W.Widget] = []
        if arg.name == "dataset" and self.command.name != "dataset":
            preview = W.Button(description=word("preview", self.language), icon="table",
                               layout=W.Layout(flex="0 0 auto", width="96px"))  # fmt: skip
            preview.on_click(lambda _b: self.preview_dataset())
            extra.append(preview)
        note = W.HTML(f"<span class='km-launcher-help'>{help_text}</span>", layout=W.Layout(flex="1 1 auto"))
        self.inputs[arg.name].layout.flex = "0 0 340px"
        row = W.HBox([label, self.inputs[arg.name], *extra, note])
        row.add_class("km-launcher-field")
        row.add_class(f"km-field-{arg.name}")
        return row

    # -- values, cell, plan ---------------------------------------------------------------------------
    def raw_values(self) -> dict[str, Any]:
        return {name: widget.value for name, widget in self.inputs.items()}

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments the form's values give (defaults left out), checked like the flags."""
        return kwargs_from(self.command, self.raw_values())

    def cell(self) -> Cell:
        return cell_for(self.command, self.kwargs(), [a.name for a in self.common])

    def set_value(self, name: str, value: Any) -> None:
        if name in self.inputs:
            self.inputs[name].value = value

    def refresh_plan(self, wait: bool = False) -> None:
        """Work out the plan in the background (the newest request wins) and show it."""
        self._plan_generation += 1
        generation = self._plan_generation
        self.plan_box.value = f"<div class='km-plan-wait'>{word('plan_wait', self.language)}</div>"

        def work() -> None:
            text = self._plan_html()
            if generation == self._plan_generation:
                self.plan_box.value = text

        self._plan_thread = threading.Thread(target=work, name="km-launcher-plan", daemon=True)
        self._plan_thread.start()
        if wait:
            self._plan_thread.join()

    def _plan_html(self) -> str:
        lang = self.language
        try:
            view = plan_for(self.command, self.kwargs())
        except SwiftError as exc:
            return f"<div class='km-plan km-plan-none'>{word('plan_none', lang)}{html.escape(str(exc))}</div>"
        except Exception as exc:  # noqa: BLE001 - an unusual config must not break the form
            line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return f"<div class='km-plan km-plan-none'>{word('plan_none', lang)}{html.escape(line)}</div>"
        plan = view.plan
        peak = f"{plan.estimate_gb:.2f} GiB" if plan.estimate_gb is not None else "?"
        fit = word("fits", lang) if view.fits else word("no_fit", lang)
        colour = "#2e7d32" if view.fits else "#c62828"
        totals = " · ".join(f"{m} {gb:.2f} GiB" for m, gb in view.totals.items())
        why = "; ".join(plan_reason(reason, lang) for reason in plan.reasons) or "-"
        return (
            f"<div class='km-plan' data-method='{plan.method}'><b>{word('plan', lang)}</b>: {plan_head(plan, lang)}"
            f" — {word('peak', lang)} <b class='km-plan-peak'>{peak}</b> "
            f"(<span style='color:{colour}'>{fit}</span>; {plan_free(view.device_free_gb, plan.device, lang)})"
            f"<br><span class='km-plan-why'>{word('why', lang)}: {html.escape(why)}</span><br>"
            f"<small>{html.escape(view.model)}: {totals}</small></div>"
        )

    # -- actions --------------------------------------------------------------------------------------
    def _show_error(self, exc: BaseException) -> None:
        self.message.value = f"<span style='color:#c62828'>{html.escape(str(exc))}</span>"

    def run(self) -> Any:
        """Run the form's cell in this kernel; show what it returns (a run's dashboard) under the form."""
        from IPython.display import display

        try:
            cell = self.cell()
        except SwiftError as exc:
            self._show_error(exc)
            return None
        self.message.value = f"<pre class='km-launcher-cell'>{html.escape(cell.text)}</pre>"
        self.output.clear_output()
        with self.output:
            try:
                result = run_cell(cell)
            except Exception as exc:  # noqa: BLE001 - UsageError / SwiftError: one line under the form
                self._show_error(exc)
                return None
            if result is not None:
                display(result)
        if result is not None and self.after_run is not None:
            self.after_run(self, result)
        return result

    def insert(self) -> Cell | None:
        """Put the form's cell below the launcher's cell (or show it to copy where the front end cannot)."""
        try:
            cell = self.cell()
        except SwiftError as exc:
            self._show_error(exc)
            return None
        shown = f"<pre class='km-launcher-cell'>{html.escape(cell.text)}</pre>"
        self.message.value = shown

        def done(inserted: bool) -> None:
            note = word("inserted", self.language) if inserted else word("copy", self.language)
            self.message.value = f"{shown}<small class='km-insert-note'>{note}</small>"

        if self._insert_cell is None:
            done(False)
        else:
            self._insert_cell(cell.text, done)
        return cell

    def preview_dataset(self) -> None:
        """Show the dataset viewer for the picked file under the fields."""
        from .dataset_viewer import show

        path = str(self.inputs["dataset"].value or "").strip()
        self.preview_out.clear_output()
        with self.preview_out:
            try:
                from IPython.display import display

                from ..data.preview import preview

                display(show(preview(path)))
            except SwiftError as exc:
                self._show_error(exc)


def run_cell(cell: Cell) -> Any:
    """Run ``cell`` as the notebook would: through the ``%swift`` magic of this IPython, else the CLI's parser."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None and "swift" in shell.magics_manager.magics["line"]:
        if cell.body:
            return shell.run_cell_magic("swift", cell.line, cell.body)
        return shell.run_line_magic("swift", cell.line)
    from ..argspec import load
    from ..cli import parse

    call = parse(cell.line, cell.body or None, prog="%%swift")
    result = call.run()
    return load(call.command.notebook)(result) if call.command.notebook and result is not None else result
