"""The engine interfaces a :class:`~kernel_magics.serve.server.Server` drives.

Two shapes of engine exist:

* :class:`Engine` — generates tokens in this process; our FastAPI app (``serve/app.py``) puts the
  OpenAI protocol in front of it. The transformers engine (``hf.py``) is one.
* :class:`ServingProcess` — an engine that ships its own OpenAI-compatible server, run as a child
  process we own (vLLM today; SGLang's ``sglang.launch_server`` and LMDeploy's ``api_server`` have the
  same shape: a command line, an environment, a health URL).

Both report the model names they serve (base first, then one name per adapter) and free everything
they hold on ``shutdown()``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ...adapters import adapter_config, base_mismatch, find_adapter
from ...errors import SwiftModelError


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one request (OpenAI semantics: temperature 0 means greedy)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 1e-5


@dataclass
class Delta:
    """A piece of a reply: new text, and when the request ends, why and the token counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class RequestRecord:
    """Timing of one finished request (``Server.stats()`` rows, ``/metrics``)."""

    request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    e2e_s: float
    finish_reason: str
    batch_size: int
    stream: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.e2e_s if self.e2e_s > 0 else 0.0

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_s": self.ttft_s,
            "e2e_s": self.e2e_s,
            "tokens_per_s": self.tokens_per_s,
            "finish_reason": self.finish_reason,
            "batch_size": self.batch_size,
            "stream": self.stream,
        }


class _Mailbox:
    """Carries deltas from the engine thread to one event loop, waking the loop once per burst.

    A decoding step produces one delta per running request; waking the loop for each (a write to its
    self-pipe and a callback apiece) costs more than the step itself on small models. Deltas posted while
    a wake-up is pending ride along with it. ``interval_s`` (the server's stream interval) spaces the
    wake-ups at least that far apart: a request's tokens that arrive in between reach its client as one
    chunk, which bounds the per-token HTTP work when the engine is faster than anyone can read. An idle
    loop is woken at once, so the first token is never held back by a quiet server.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[tuple[asyncio.Queue[Any], Any]] = []
        self.scheduled = False
        self.last_delivery = 0.0

    def post(self, queue: asyncio.Queue[Any], item: Any, interval_s: float = 0.0) -> None:
        with self.lock:
            self.items.append((queue, item))
            if self.scheduled:
                return
            self.scheduled = True
            delay = self.last_delivery + interval_s - time.monotonic()
        try:
            if delay > 0:
                self.loop.call_soon_threadsafe(self.loop.call_later, delay, self.deliver)
            else:
                self.loop.call_soon_threadsafe(self.deliver)
        except RuntimeError:
            with self.lock:
                self.scheduled = False
                self.items.clear()
            raise

    def deliver(self) -> None:
        with self.lock:
            items, self.items = self.items, []
            self.scheduled = False
            self.last_delivery = time.monotonic()
        for queue, item in items:
            queue.put_nowait(item)


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()
_mailboxes_lock = threading.Lock()


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    with _mailboxes_lock:
        box = _mailboxes.get(loop)
        if box is None:
            box = _mailboxes[loop] = _Mailbox(loop)
        return box


@dataclass
class RequestHandle:
    """A submitted request: the engine thread pushes :class:`Delta` s, the event loop reads them."""

    request_id: str
    model: str
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    stream: bool = False
    stream_interval_s: float = 0.0  # see _Mailbox: 0 wakes the reader for every token
    queue: asyncio.Queue[Delta | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished: bool = False  # its last item (a finish reason or an error) has been pushed

    def push(self, item: Delta | BaseException) -> None:
        """Called from the engine thread."""
        if isinstance(item, BaseException) or item.finish_reason is not None:
            self.finished = True
        try:
            _mailbox(self.loop).post(self.queue, item, self.stream_interval_s)
        except RuntimeError:  # the loop is closed: the client is gone
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    async def deltas(self) -> AsyncIterator[Delta]:
        """Yield deltas until the one that carries a ``finish_reason``.

        Deltas that are already waiting are merged into one, so a client that reads slower than the
        engine writes gets fewer, larger chunks instead of falling behind.
        """
        try:
            while True:
                item = await self.queue.get()
                while isinstance(item, Delta) and item.finish_reason is None and not self.queue.empty():
                    following = self.queue.get_nowait()
                    if isinstance(following, BaseException):
                        item = following
                        break
                    following.text = item.text + following.text
                    item = following
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            self.cancel()  # no-op when finished; frees the batch slot when the client went away


class EngineFailure(RuntimeError):
    """The engine failed while generating a request (the client gets a 500 with this message)."""


class InFlight:
    """Requests a scheduler took from its queue and has not finished (the first batch and every joiner).

    When generation fails, :meth:`fail_all` hands the error to each of them, so no request waits for
    an answer that will never come.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: list[RequestHandle] = []

    def take(self, handles: list[RequestHandle]) -> list[RequestHandle]:
        with self._lock:
            live = [h for h in self._handles if not h.finished and not h.cancelled.is_set()]
            self._handles = live + list(handles)
        return handles

    def fail_all(self, message: str) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            if not handle.finished:
                handle.push(EngineFailure(message))


@runtime_checkable
class Engine(Protocol):
    """An in-process engine served by our FastAPI app."""

    name: str  # "transformers", ...
    models: list[str]  # base model name first, then adapter names
    max_model_len: int

    def start(self) -> None:
        """Load weights and start the scheduler (blocking until ready)."""

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a chat conversation with the generation prompt appended."""

    def encode(self, text: str) -> list[int]:
        """Token ids of a raw text prompt."""

    def submit(self, handle: RequestHandle) -> None:
        """Queue a request; deltas arrive on ``handle``."""

    def records(self) -> list[RequestRecord]:
        """Timing of the finished requests, oldest first."""

    def shutdown(self) -> None:
        """Stop the scheduler and free the weights (device memory included)."""


class ServingProcess(Protocol):
    """An engine that brings its own OpenAI server and runs as a child process (vLLM, SGLang, LMDeploy)."""

    name: str
    models: list[str]

    def command(self, host: str, port: int) -> list[str]:
        """The argv that starts the server."""

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The child's environment."""

    health_path: str  # e.g. "/health"
    startup_timeout_s: float


# -- adapters ----------------------------------------------------------------------------------------
def adapter_folder(path: str | Path) -> Path:
    """The folder holding ``adapter_config.json`` (a run folder with an ``adapter/`` subfolder works too)."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise SwiftModelError(f"adapter folder {folder} does not exist; pass the adapter_dir of a finished run")
    found = find_adapter(folder)
    if found is None:
        raise SwiftModelError(f"{folder} has no adapter_config.json; pass a peft adapter folder (e.g. run.adapter_dir)")
    return found


def check_adapter(name: str, path: str | Path, base_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Check that the adapter at ``path`` is a LoRA adapter for the model in ``base_dir``.

    Returns the adapter folder and its ``adapter_config.json``. When the base it was trained on is at hand,
    its architecture must match ours (:func:`kernel_magics.adapters.base_mismatch`).
    """
    folder = adapter_folder(path)
    config = adapter_config(folder)
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type not in ("LORA", ""):
        raise SwiftModelError(
            f"adapter '{name}' at {folder} is a {peft_type} adapter; only LoRA adapters can be served"
        )
    mismatch = base_mismatch(folder, base_dir)
    if mismatch is not None:
        key, trained_on = mismatch.field, mismatch.trained_on
        raise SwiftModelError(
            f"adapter '{name}' was trained on {trained_on} ({key}={mismatch.theirs}) but the served model "
            f"has {key}={mismatch.ours}; serve it with --model {trained_on} or pick an adapter of this model"
        )
    return folder, config
