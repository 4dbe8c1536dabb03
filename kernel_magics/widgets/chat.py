"""The chat panel: stream replies from any OpenAI-compatible server, one model or several side by side.

HTTP happens here, on the kernel side (``kernel_magics.serve.chat.stream_reply`` in a thread per model);
tokens reach the browser through the synced ``turns`` trait, throttled to a few updates per second.
The conversation stays in Python: ``panel.history`` (messages of the first model),
``panel.histories()`` (one conversation per model) and ``panel.export_rows("sft" | "dpo")`` (dataset
rows; "this answer is better" in compare mode makes preference pairs).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..errors import SwiftError, SwiftUsageError
from ..serve.chat import ChatTarget, ReplyStats, stream_reply
from .assets import asset

PUSH_EVERY_S = 0.05


class ChatPanel(anywidget.AnyWidget):
    """A chat panel against ``target`` (see :func:`kernel_magics.serve.api.chat`)."""

    _esm = traitlets.Unicode(asset("chat.js")).tag(sync=True)
    _css = traitlets.Unicode(asset("chat.css")).tag(sync=True)

    url = traitlets.Unicode("").tag(sync=True)
    models = traitlets.List(traitlets.Unicode()).tag(sync=True)  # the column(s) answering each prompt
    available = traitlets.List(traitlets.Unicode()).tag(sync=True)  # what the server offers (model picker)
    system = traitlets.Unicode("").tag(sync=True)
    temperature = traitlets.Float(0.7).tag(sync=True)
    max_tokens = traitlets.Int(256).tag(sync=True)
    # [{prompt, answers{model: text}, calls{model: [{name, arguments}]}, done{}, errors{}, stats{}, preferred}]
    turns = traitlets.List().tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)

    def __init__(self, target: ChatTarget, tools: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        """``tools``: OpenAI function specs offered to the models; the calls they make show under the reply."""
        super().__init__(
            url=target.url,
            models=list(target.models),
            available=list(target.available or target.models),
            system=target.system or "",
            temperature=target.temperature,
            max_tokens=target.max_tokens,
            **kwargs,
        )
        self.target = target
        self.tools = list(tools or [])
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self.on_msg(self._on_message)

    # -- browser messages ------------------------------------------------------------------------
    def _on_message(self, widget: Any, content: dict[str, Any], buffers: Any) -> None:
        kind = content.get("type")
        if kind == "send":
            images = [str(url) for url in content.get("images") or [] if isinstance(url, str)]
            self.send_prompt(str(content.get("text", "")), images=images)
        elif kind == "clear":
            self.clear()
        elif kind == "prefer":
            self.prefer(int(content.get("turn", -1)), str(content.get("model", "")))

    # -- actions ---------------------------------------------------------------------------------
    def send_prompt(self, text: str, wait: bool = False, images: list[str] | None = None) -> None:
        """Ask every model of the panel ``text``; replies stream into ``turns`` (``wait``: block until done).

        ``images``: pictures for vision-language models, as ``data:image/...;base64,...`` URLs or local
        files (read and sent as data: URLs); they go before the text, as OpenAI ``image_url`` parts.
        """
        text = text.strip()
        images = [image_url(i) for i in images or []]
        if not text and images:
            text = "Describe the image."
        if not text:
            return
        if self.busy:
            self.status = "still answering the last prompt"
            return
        with self._lock:
            contexts = {m: self._messages_for(m) + [_user_message(text, images)] for m in self.models}
            turn = {
                "prompt": text,
                "images": images,
                "answers": {m: "" for m in self.models},
                "calls": {},
                "done": {m: False for m in self.models},
                "errors": {},
                "stats": {},
                "preferred": None,
            }
            self.turns = [*copy.deepcopy(self.turns), turn]
            index = len(self.turns) - 1
            self.busy = True
            self.status = ""
        self._threads = [
            threading.Thread(target=self._stream, args=(index, m, contexts[m]), daemon=True, name=f"km-chat-{m}")
            for m in self.models
        ]
        for thread in self._threads:
            thread.start()
        if wait:
            self.wait()

    def wait(self, timeout: float = 300.0) -> None:
        """Block until the current replies are complete."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def clear(self) -> None:
        """Forget the conversation."""
        with self._lock:
            if self.busy:
                self.status = "wait for the reply to finish before clearing"
                return
            self.turns = []
            self.status = ""

    def prefer(self, turn: int, model: str) -> None:
        """Mark ``model``'s answer to ``turn`` as the better one (compare mode; a DPO pair on export)."""
        with self._lock:
            turns = copy.deepcopy(self.turns)
            if not 0 <= turn < len(turns) or model not in turns[turn]["answers"]:
                raise SwiftUsageError(f"no answer of '{model}' in turn {turn}")
            turns[turn]["preferred"] = model
            self.turns = turns

    def _stream(self, index: int, model: str, messages: list[dict[str, str]]) -> None:
        stats = ReplyStats()
        parts: list[str] = []
        last_push = 0.0
        error = None
        try:
            for piece in stream_reply(
                self.target,
                model,
                messages,
                stats,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                tools=self.tools or None,
            ):
                parts.append(piece)
                if time.monotonic() - last_push >= PUSH_EVERY_S:
                    self._update(index, model, "".join(parts))
                    last_push = time.monotonic()
        except SwiftError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the panel shows the problem, the kernel stays up
            error = f"{type(exc).__name__}: {exc}"
        speed = f"{stats.tokens_per_s:.0f} tok/s" if stats.tokens_per_s else ""
        first = f"first token {stats.ttft_s * 1000:.0f} ms" if stats.ttft_s is not None else ""
        self._update(
            index,
            model,
            "".join(parts),
            done=True,
            error=error,
            stats=" · ".join(x for x in (first, speed) if x),
            calls=stats.tool_calls,
        )

    def _update(
        self,
        index: int,
        model: str,
        text: str,
        done: bool = False,
        error: str | None = None,
        stats: str = "",
        calls: list[dict[str, str]] | None = None,
    ) -> None:
        with self._lock:
            turns = copy.deepcopy(self.turns)
            if index >= len(turns):
                return
            turn = turns[index]
            turn["answers"][model] = text
            if calls:
                turn.setdefault("calls", {})[model] = [dict(call) for call in calls]
            if done:
                turn["done"][model] = True
                turn["stats"][model] = stats
                if error:
                    turn["errors"][model] = error
            self.turns = turns
            if done and all(turn["done"].values()):
                self.busy = False
                errors = list(turn["errors"].values())
                self.status = errors[0] if errors else ""

    # -- conversation as data --------------------------------------------------------------------
    def _messages_for(self, model: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system}] if self.system.strip() else []
        for turn in self.turns:
            # a model picked mid-conversation sees the answers that were shown
            source = model if model in turn["answers"] else next(iter(turn["answers"]), None)
            if source is None or not turn["done"].get(source) or turn["errors"].get(source):
                continue
            messages.append(_user_message(turn["prompt"], turn.get("images") or []))
            messages.append({"role": "assistant", "content": turn["answers"][source]})
        return messages

    @property
    def history(self) -> list[dict[str, str]]:
        """The conversation (system, user, assistant messages) of the panel's first model."""
        return self._messages_for(self.models[0])

    def histories(self) -> dict[str, list[dict[str, str]]]:
        """One conversation per model of the panel."""
        return {m: self._messages_for(m) for m in self.models}

    def export_rows(self, kind: str = "sft") -> list[dict[str, Any]]:
        """Dataset rows: ``"sft"`` -> ``{"messages": [...]}`` (the preferred answer of each turn, else the
        first model's); ``"dpo"`` -> ``{"prompt", "chosen", "rejected"}`` for each turn with a preferred
        answer (strings for a single-turn chat without system prompt, conversational lists otherwise)."""
        if kind not in ("sft", "dpo"):
            raise SwiftUsageError(f"export_rows: kind must be 'sft' or 'dpo', got {kind!r}")
        finished = [t for t in self.turns if all(t["done"].values()) and not t["errors"]]
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        if kind == "sft":
            messages = list(system)
            for turn in finished:
                chosen = turn["preferred"] or self.models[0]
                messages += [
                    _user_message(turn["prompt"], turn.get("images") or []),
                    {"role": "assistant", "content": turn["answers"][chosen]},
                ]
            return [{"messages": messages}] if finished else []
        rows = []
        plain = not system and len(finished) <= 1
        context = list(system)
        for turn in finished:
            preferred = turn["preferred"]
            prompt = context + [{"role": "user", "content": turn["prompt"]}]
            if preferred:
                for other, answer in turn["answers"].items():
                    if other == preferred or answer == turn["answers"][preferred]:
                        continue
                    if plain:
                        rows.append(
                            {"prompt": turn["prompt"], "chosen": turn["answers"][preferred], "rejected": answer}
                        )
                    else:
                        rows.append(
                            {
                                "prompt": copy.deepcopy(prompt),
                                "chosen": [{"role": "assistant", "content": turn["answers"][preferred]}],
                                "rejected": [{"role": "assistant", "content": answer}],
                            }
                        )
            kept = turn["answers"][preferred or self.models[0]]
            context = prompt + [{"role": "assistant", "content": kept}]
        return rows

    def save_rows(self, path: str | os.PathLike[str], kind: str = "sft") -> Path:
        """Append :meth:`export_rows` to a jsonl file (written to a temp file, then renamed)."""
        target = Path(path).expanduser()
        old = target.read_text(encoding="utf-8") if target.is_file() else ""
        new = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.export_rows(kind))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(old + new)
        os.replace(tmp, target)
        return target

    def __repr__(self) -> str:
        return f"<ChatPanel {', '.join(self.models)} at {self.url}: {len(self.turns)} turn(s)>"


def image_url(image: str | os.PathLike[str]) -> str:
    """A ``data:`` URL for an image: data URLs pass through, local files are read and encoded."""
    import base64
    import mimetypes

    text = os.fspath(image)
    if text.startswith("data:image/"):
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise SwiftUsageError(f"image {text} is neither a data:image URL nor an existing file")
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _user_message(text: str, images: list[str]) -> dict[str, Any]:
    if not images:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def tool_call_lines(turn: dict[str, Any], model: str) -> list[str]:
    """The tool calls of ``model`` in ``turn`` as ``name(arguments)`` lines (what the panel shows)."""
    return [f"{call['name']}({call['arguments']})" for call in (turn.get("calls") or {}).get(model, [])]


def show(target: ChatTarget) -> ChatPanel:
    """Notebook display of ``%swift chat``: the panel for the resolved target."""
    return ChatPanel(target)
