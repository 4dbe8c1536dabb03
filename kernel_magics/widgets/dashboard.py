"""The live training dashboard: Plotly charts, a progress bar with ETA, a status line and a Stop button.

``Dashboard(run)`` subscribes to the run's events and redraws at most every ``interval`` seconds (rows
that arrive in between are batched, and a timer flushes the last ones), so a fast run does not flood the
notebook. Built on a finished run it replays ``run.metrics``. ``show(run)`` is the ``%%swift sft``
notebook hook.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..argspec import load

PANELS = (
    ("loss", "loss"),
    ("learning_rate", "learning rate"),
    ("grad_norm", "grad-norm"),
    ("tokens_per_s", "tokens/s"),
    ("memory_gb", "memory (GiB)"),
)
# Runs of methods that log more (km.dpo: rewards, reward accuracy, the loss's own signal) get a third row,
# one chart per group of metric keys that kernel_magics.train.methods.registry lists for the run's kind.
PANEL_TITLES = {
    "logps/chosen": "log-probs: <span style='color:#2e7d32'>chosen</span> · <span style='color:#c62828'>rejected</span>",
    "rewards/accuracies": "reward accuracy",
    "log_odds_ratio": "log-odds ratio",
    "kl": "KL",
}
# Metrics that a trainer logs only while a knob is non-zero (TRL computes no KL term, and logs none, at beta = 0):
# a chart whose every key is switched off by the run's config is left out, and a line under the charts says why.
LOGGED_ONLY_WHEN = {"kl": "beta"}
FUNCTION_COLORS = ("#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f")
REWARD_COLORS = {"rewards/chosen": "#2e7d32", "rewards/rejected": "#c62828", "rewards/margins": "#1565c0"}
PAIR_COLORS = {**REWARD_COLORS, "logps/chosen": "#2e7d32", "logps/rejected": "#c62828"}
TERMINAL = ("finished", "stopped", "failed")
STOP_TIP = "stop at the next step, with a checkpoint"
STATUS_COLORS = {"failed": "#c62828", "finished": "#2e7d32", "stopped": "#ef6c00", "stopping": "#ef6c00"}


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def _method_of(run: Any) -> Any:
    """The run's training method from the registry (None for a config no method claims)."""
    from ..errors import SwiftUsageError
    from ..train.methods.registry import method_of

    try:
        return method_of(run.config)
    except SwiftUsageError:
        return None


class Dashboard(W.VBox):
    """Live view of a training :class:`~kernel_magics.train.runtime.run.Run`."""

    def __init__(self, run: Any, interval: float = 0.5) -> None:
        self.run = run
        self.interval = interval
        self.flushes = 0  # number of redraws (tests check batching)
        self._pending: list[dict[str, Any]] = []
        self._series: dict[str, tuple[list[float], list[float]]] = {}
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None

        self.omitted: list[str] = []  # "KL not computed: beta = 0": charts left out, and why
        self._method = _method_of(run)
        self.figure = self._make_figure()
        self.title = W.HTML(self._title_html())
        self.status = W.HTML(layout=W.Layout(min_height="22px"))
        self.progress = W.IntProgress(value=0, min=0, max=max(1, int(run.progress.get("max_steps") or 1)))
        self.progress.layout.width = "420px"
        self.progress_label = W.HTML()
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger", tooltip=STOP_TIP)
        self.stop_button.on_click(lambda _: self._on_stop())
        self.notes = W.HTML(self._notes_html())
        self.omitted_line = W.HTML(
            "".join(
                f"<div class='km-omitted' style='font-size:12px;color:#555'>{html.escape(o)}</div>"
                for o in self.omitted
            )
        )
        bar = W.HBox(
            [self.progress, self.progress_label, self.stop_button], layout=W.Layout(align_items="center", gap="12px")
        )
        body: Any = self.figure
        self.samples = None
        panel = self._method.samples_panel if self._method is not None else None
        if panel:  # the method's samples tab (VLM: answers on a few images; GRPO: the latest scored completions)
            self.samples = load(panel)(run)
            body = W.Tab(children=[self.figure, self.samples], titles=("charts", "samples"))
        super().__init__([self.title, self.status, bar, body, self.omitted_line, self.notes])
        self.add_class("km-dashboard")

        for row in run.rows:  # replay what happened before (or all of a finished run)
            self._pending.append(row)
        self._flush()
        self._unsubscribe = run.subscribe(self._on_event)
        self._update_status(run.status)

    # -- figure ----------------------------------------------------------------------------------
    def _preference_panels(self) -> list[tuple[tuple[str, ...], str]]:
        """The third row's charts for this run's method (empty for SFT); GRPO's follow its reward functions."""
        from ..train.methods.registry import panels

        if self._method is not None and self._method.function_panels:
            return self._function_panels(self._method)
        rewards = "rewards: " + " · ".join(
            f"<span style='color:{color}'>{key.split('/')[1].rstrip('s')}</span>"
            for key, color in REWARD_COLORS.items()
        )
        titles = {**PANEL_TITLES, next(iter(REWARD_COLORS)): rewards}
        return [(keys, titles.get(keys[0], " · ".join(keys))) for keys in panels(self.run.config)]

    def _function_panels(self, entry: Any) -> list[tuple[tuple[str, ...], str]]:
        """Charts that follow the run's own functions (GRPO: the total and each reward function's mean / std,
        completion length, KL, clip ratio), from the method's registry entry."""
        names = [str(n) for n in getattr(self.run.config, entry.functions_field or "", None) or []]
        self._colors = {
            f"rewards/{n}/{s}": FUNCTION_COLORS[i % len(FUNCTION_COLORS)]
            for i, n in enumerate(names)
            for s in ("mean", "std")
        }
        panels = []
        for keys, per_function, title in entry.function_panels:
            functions = tuple(per_function.format(n) for n in names) if per_function else ()
            if functions:
                title += ": total · " + " · ".join(
                    f"<span style='color:{self._colors[f]}'>{html.escape(n)}</span>"
                    for n, f in zip(names, functions, strict=True)
                )
            panels.append(((*keys, *functions), title))
        return panels

    def _switched_off(self, keys: tuple[str, ...]) -> str | None:
        """The knob setting that keeps every one of ``keys`` from being logged in this run ("beta = 0"), or None."""
        settings = set()
        for key in keys:
            knob = LOGGED_ONLY_WHEN.get(key)
            value = getattr(self.run.config, knob, None) if knob else None
            if value is None or not isinstance(value, int | float) or value != 0:
                return None
            settings.add(f"{knob} = {value:g}")
        return ", ".join(sorted(settings))

    def _extra_panels(self) -> list[tuple[tuple[str, ...], str]]:
        """The method's panels that the run computes; each one its config switches off is noted in ``omitted``."""
        extra = []
        for keys, title in self._preference_panels():
            setting = self._switched_off(keys)
            if setting is None:
                extra.append((keys, title))
            else:
                self.omitted.append(f"{title} not computed: {setting}")
        return extra

    def _make_figure(self) -> go.FigureWidget:
        self._colors: dict[str, str] = {}
        extra = self._extra_panels()
        titles = [title for _, title in PANELS]
        if extra:
            titles += [""] + [title for _, title in extra]
        extra_rows = -(-len(extra) // 3)
        fig = make_subplots(
            rows=2 + extra_rows,
            cols=3,
            subplot_titles=titles,
            horizontal_spacing=0.07,
            vertical_spacing=0.16 if not extra else 0.11 if extra_rows == 1 else 0.08,
        )
        widget = go.FigureWidget(fig)
        self._add_traces(widget, extra)
        widget.update_layout(
            height=460 + 200 * extra_rows,
            margin={"l": 40, "r": 10, "t": 40, "b": 30},
            showlegend=False,
            template="plotly_white",
        )
        widget.update_xaxes(title_text="step", row=2 + extra_rows)
        return widget

    def _add_traces(self, widget: go.FigureWidget, extra: list[tuple[tuple[str, ...], str]]) -> None:
        """One empty line per metric (the five common panels, eval loss, the method's panels), indexed by key."""
        positions = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
        self._trace_index: dict[str, int] = {}
        for (key, _), (r, c) in zip(PANELS, positions, strict=True):
            widget.add_scatter(x=[], y=[], mode="lines+markers", name=key, row=r, col=c, marker={"size": 4})
            self._trace_index[key] = len(widget.data) - 1
        widget.add_scatter(
            x=[], y=[], mode="lines+markers", name="eval_loss", row=1, col=1, marker={"size": 7, "symbol": "diamond"}
        )
        self._trace_index["eval_loss"] = len(widget.data) - 1
        for index, (keys, _) in enumerate(extra):
            for key in keys:
                color = PAIR_COLORS.get(key) or self._colors.get(key)
                widget.add_scatter(
                    x=[],
                    y=[],
                    mode="lines+markers",
                    name=key,
                    row=3 + index // 3,
                    col=1 + index % 3,
                    marker={"size": 4},
                    line={"color": color} if color else {},
                )
                self._trace_index[key] = len(widget.data) - 1

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) drawn for ``key`` so far."""
        with self._lock:
            steps, values = self._series.get(key, ([], []))
            return list(steps), list(values)

    # -- events ----------------------------------------------------------------------------------
    def _on_event(self, event: str, payload: Any) -> None:
        if event == "metrics":
            with self._lock:
                self._pending.append(payload)
            self._maybe_flush()
        elif event == "status":
            if payload in TERMINAL:
                self._flush()
            self._update_status(payload)
        elif event in ("progress", "begin"):
            self._maybe_flush()
        elif event == "log":
            self.notes.value = self._notes_html()
        elif event == "checkpoint":
            self._update_status(self.run.status, extra=f"checkpoint {str(payload).rsplit('/', 1)[-1]} written")

    def _maybe_flush(self) -> None:
        """Schedule a redraw on a timer thread (never in the training thread, which only appends)."""
        with self._lock:
            if self._timer is not None:
                return
            delay = max(self.interval - (time.monotonic() - self._last_flush), 0.0)
            self._timer = threading.Timer(delay, self._flush)
            self._timer.daemon = True
            self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._last_flush = time.monotonic()
            changed = set()
            for row in rows:
                step = row.get("step")
                for key in list(self._trace_index):
                    value = row.get(key)
                    if value is None or step is None:
                        continue
                    steps, values = self._series.setdefault(key, ([], []))
                    steps.append(step)
                    values.append(value)
                    changed.add(key)
            snapshot = {k: (list(self._series[k][0]), list(self._series[k][1])) for k in changed}
        if snapshot:
            with self.figure.batch_update():
                for key, (steps, values) in snapshot.items():
                    trace = self.figure.data[self._trace_index[key]]
                    trace.x, trace.y = steps, values
        self._update_progress()
        self.flushes += 1

    def _update_progress(self) -> None:
        p = self.run.progress
        total = int(p.get("max_steps") or 0)
        step = int(p.get("step") or 0)
        if total > 0:
            self.progress.max = total
        self.progress.value = min(step, self.progress.max)
        eta = p.get("eta_s") if self.run.status in ("running", "stopping") else None
        self.progress_label.value = (
            f"<span class='km-progress'>step {step}/{total or '?'} · elapsed {_fmt_time(p.get('elapsed_s'))}"
            f" · ETA {_fmt_time(eta)}</span>"
        )

    def _update_status(self, status: str, extra: str = "") -> None:
        color = STATUS_COLORS.get(status, "#1565c0")
        text = f"<b class='km-status' style='color:{color}'>{html.escape(status)}</b>"
        if self.run.error:
            text += f" — <span style='color:#c62828'>{html.escape(self.run.error)}</span>"
        elif status in TERMINAL:
            text += f" — adapter in <code>{html.escape(str(self.run.adapter_dir))}</code>"
        if extra:
            text += f" · {html.escape(extra)}"
        self.status.value = text
        # the run's own status too: an event handled late in another thread must not re-enable Stop after the end
        self.stop_button.disabled = any(s in TERMINAL or s == "stopping" for s in (status, self.run.status))
        ended_as = next((s for s in (self.run.status, status) if s in TERMINAL), None)
        # a disabled button keeps its red, only faded: once the run has ended it turns grey, so it no longer looks live
        self.stop_button.button_style = "" if ended_as else "danger"
        self.stop_button.tooltip = f"the run has {ended_as}" if ended_as else STOP_TIP
        self._update_progress()

    def _on_stop(self) -> None:
        self.stop_button.disabled = True
        self.run.stop()
        self._update_status(self.run.status, extra="stop requested: finishing the step and writing a checkpoint")

    def _title_html(self) -> str:
        config = self.run.config
        plan = config.plan
        return (
            f"<b>{html.escape(self.run.name)}</b> · {html.escape(config.model)} · "
            f"{html.escape(plan.method)} {html.escape(plan.dtype)} on {html.escape(plan.device)}"
            + (f" · {html.escape(config.loss)} β={config.beta}" if config.loss else "")
        )

    def _notes_html(self) -> str:
        notes = "".join(f"<div>{html.escape(n)}</div>" for n in self.run.notes[-6:])
        return f"<div style='font-size:12px;color:#555'>{notes}</div>"

    def close(self) -> None:
        self._unsubscribe()
        if self.samples is not None:
            self.samples.close()
        super().close()


def show(run: Any) -> Dashboard:
    """The ``%%swift sft`` notebook hook: a live dashboard for ``run``."""
    return Dashboard(run)
