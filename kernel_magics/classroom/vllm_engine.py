"""The classroom's vLLM engine: one base model in vLLM's own engine, every student's adapter a per-request LoRA.

The plain server runs vLLM as its own OpenAI server in a child process, where the classroom's per-user turns
and adapter uploads cannot reach. Here vLLM's ``LLMEngine`` runs inside the service instead (its engine core
still in a process of its own): :class:`ClassVLLMEngine` is an in-process engine of the serving contract
(``serve/engines/base.py``: ``submit`` a request handle, deltas pushed back), so the classroom's fair turns
sit in front of it exactly as in front of the transformers engine. Each request names its model; an adapter's
request carries that adapter's ``LoRARequest`` (multi-LoRA batching: requests of different students
generate in the same batches). A published adapter is loaded into the engine at once (``add_lora``: a
broken one is refused at upload, not at its first request) and removed with ``remove_lora``.

Requests take sampling settings only (:data:`HONOURED`); the other fields get the server's 400.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import SwiftModelError
from ..serve.engines.base import Delta, RequestHandle, RequestRecord
from ..serve.engines.vllm import CPU_KV_CACHE_BYTES, LORA_RANKS
from ..serve.protocol import SAMPLING_FIELDS

HONOURED = {"chat": SAMPLING_FIELDS | {"messages", "max_completion_tokens"}, "completions": SAMPLING_FIELDS | {"prompt"}}


def lora_rank_limit(max_rank: int) -> int:
    """The smallest rank vLLM accepts as ``max_lora_rank`` that holds every adapter the class takes."""
    return next((r for r in LORA_RANKS if r >= max_rank), LORA_RANKS[-1])


class ClassVLLMEngine:
    """vLLM's engine behind the classroom's turns, with adapters added and removed while it runs."""

    name = "vllm"

    def __init__(self, model_dir: Path, served_name: str, device: Any, max_batch_size: int, max_rank: int, max_loras: int) -> None:  # fmt: skip
        self.model_dir = Path(model_dir)
        self.served_name = served_name
        self.models = [served_name]
        self.adapter_dirs: dict[str, Path] = {}
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_rank = lora_rank_limit(max_rank)
        self.max_loras = max(1, max_loras)  # adapters in one batch at once (vLLM keeps the others on the CPU)
        self.max_model_len = 0
        self._loras: dict[str, Any] = {}  # model name -> LoRARequest
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._new: list[RequestHandle] = []
        self._running: dict[str, tuple[RequestHandle, float, int]] = {}  # request id -> (handle, arrived, tokens)
        self._records: list[RequestRecord] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------------------
    def start(self) -> None:
        from transformers import AutoTokenizer
        from vllm import EngineArgs, LLMEngine

        on_cpu = self.device is None or self.device.type == "cpu"
        options: dict[str, Any] = {"enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES} if on_cpu else {}
        args = EngineArgs(
            model=str(self.model_dir), served_model_name=self.served_name, enable_lora=True, max_loras=self.max_loras,
            max_lora_rank=self.max_rank, max_cpu_loras=4096, max_num_seqs=self.max_batch_size, **options,
        )  # fmt: skip
        self.engine = LLMEngine.from_engine_args(args)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.max_model_len = int(self.engine.model_config.max_model_len)
        self.vocab_size = int(self.engine.model_config.get_vocab_size())
        self._thread = threading.Thread(target=self._loop, name=f"km-class-vllm-{self.served_name}", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(30)
        for handle, _, _ in list(self._running.values()):
            handle.push(RuntimeError("the server is shutting down"))
        self._running.clear()
        engine = getattr(self, "engine", None)
        if engine is not None and hasattr(engine, "engine_core"):
            engine.engine_core.shutdown()

    # -- adapters (called while nothing generates: FairScheduler.exclusive) -------------------------------
    def add_adapter(self, name: str, folder: Path) -> None:
        from vllm.lora.request import LoRARequest

        request = LoRARequest(name, next(self._ids), str(folder))
        try:
            self.engine.add_lora(request)
        except Exception as exc:  # noqa: BLE001 - whatever vLLM raises, the adapter is refused
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SwiftModelError(f"adapter {name} does not load into {self.served_name}: {first[:200]}") from None
        self._loras[name] = request
        self.adapter_dirs[name] = Path(folder)
        if name not in self.models:
            self.models.append(name)

    def remove_adapter(self, name: str) -> None:
        request = self._loras.pop(name, None)
        if request is not None:
            self.engine.remove_lora(request.lora_int_id)
        self.adapter_dirs.pop(name, None)
        if name in self.models:
            self.models.remove(name)

    # -- the serving contract -----------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        from ..serve.tools import chat_prompt_ids

        return chat_prompt_ids(self.tokenizer, messages, tools)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def submit(self, handle: RequestHandle) -> None:
        if self._stop.is_set():
            raise RuntimeError("the server is shutting down")
        with self._lock:
            self._new.append(handle)
            self._lock.notify()

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._new and not self._running and not self._stop.is_set():
                    self._lock.wait(0.5)
                new, self._new = self._new, []
            try:
                for handle in new:
                    self._add(handle)
                self._abort_cancelled()
                if self._running:
                    for output in self.engine.step():
                        self._deliver(output)
            except Exception as exc:  # noqa: BLE001 - one failed step fails its requests, not the service
                for handle, _, _ in list(self._running.values()):
                    handle.push(RuntimeError(f"generation failed: {type(exc).__name__}: {str(exc)[:200]}"))
                self._running.clear()

    def _add(self, handle: RequestHandle) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = handle.params
        sampling = SamplingParams(
            max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p, stop=list(params.stop) or None,
            seed=params.seed, output_kind=RequestOutputKind.DELTA,
        )  # fmt: skip
        lora = self._loras.get(handle.model) if handle.model != self.served_name else None
        self.engine.add_request(handle.request_id, {"prompt_token_ids": handle.prompt_ids}, sampling, lora_request=lora)
        self._running[handle.request_id] = (handle, handle.arrived, 0)

    def _abort_cancelled(self) -> None:
        gone = [rid for rid, (handle, _, _) in self._running.items() if handle.cancelled.is_set()]
        if gone:
            self.engine.abort_request(gone)
            for rid in gone:
                del self._running[rid]

    def _deliver(self, output: Any) -> None:
        entry = self._running.get(output.request_id)
        if entry is None:
            return
        handle, arrived, tokens = entry
        piece = output.outputs[0]
        tokens += len(piece.token_ids)
        if handle.first_token_at is None and piece.token_ids:
            handle.first_token_at = time.perf_counter()
        finish = piece.finish_reason if output.finished else None
        if finish == "abort":
            finish = "stop"
        prompt_tokens = len(handle.prompt_ids)
        handle.push(Delta(piece.text, finish, prompt_tokens, tokens))
        if output.finished:
            del self._running[output.request_id]
            self._record(handle, arrived, tokens, finish or "stop")
        else:
            self._running[output.request_id] = (handle, arrived, tokens)

    def _record(self, handle: RequestHandle, arrived: float, tokens: int, finish: str) -> None:
        end = time.perf_counter()
        first = handle.first_token_at or end
        record = RequestRecord(handle.request_id, handle.model, len(handle.prompt_ids), tokens, first - arrived, end - arrived,
                               finish, len(self._running) + 1, handle.stream)  # fmt: skip
        with self._lock:
            self._records.append(record)
            del self._records[:-10_000]


def create(model_dir: Path, served_name: str, device: Any, settings: Any) -> ClassVLLMEngine:
    """The engine for the teacher's ``settings`` (a :class:`~.settings.ClassroomSettings`): a batch holds up to
    ``max_batch_size`` requests, each may use a different adapter (at most 32 adapters per batch)."""
    return ClassVLLMEngine(model_dir, served_name, device, settings.max_batch_size, settings.max_rank, min(settings.max_batch_size, 32))
