"""The transformers engine: batched token-by-token generation with per-request peft adapters.

A scheduler thread owns the model. Requests that arrive while it is busy wait in a queue; each round
it takes the oldest waiting request and every other waiting request for the same model (base or one
adapter, up to ``max_batch_size``), left-pads their prompts into one batch and decodes step by step
with a KV cache. Each row has its own sampling settings (temperature, top-p, seed, stop strings,
max_tokens) and leaves the batch as soon as it ends, so short requests do not wait for long ones.
Adapters stay separate: peft's ``set_adapter`` selects one per batch and ``disable_adapter`` serves
the base model, with no merge.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ...device import DeviceInfo
from ...errors import SwiftConfigError, SwiftModelError
from ..guided import Grammars
from ..logprobs import prompt_entries
from ..tools import chat_prompt_ids, parser_for_template
from .base import EngineFailure, InFlight, RequestHandle, RequestRecord, check_adapter
from .hf_batch import Row, joinable, merge_caches, step


class HFEngine:
    """Serve a causal LM and its LoRA adapters with transformers + peft in this process."""

    name = "transformers"
    supports_echo = True  # /v1/completions echo: prompt log-probabilities from the prefill's logits

    def __init__(
        self,
        model_dir: Path,
        served_name: str,
        adapters: dict[str, str | Path] | None = None,
        device: DeviceInfo | None = None,
        max_batch_size: int = 32,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        tool_call_parser: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.tool_call_parser = tool_call_parser  # None: chosen from the chat template at start()
        self.grammars: Any = None
        self.vocab_size: int | None = None
        self.served_name = served_name
        self.adapter_dirs = {n: check_adapter(n, p, self.model_dir)[0] for n, p in (adapters or {}).items()}
        self.models = [served_name, *self.adapter_dirs]
        self.device = device
        self.max_batch_size = max(1, int(max_batch_size))
        self._max_model_len = max_model_len
        self.max_model_len = max_model_len or 0
        self.trust_remote_code = trust_remote_code
        self._waiting: deque[RequestHandle] = deque()
        self._in_flight = InFlight()  # taken from the queue, not finished: each hears of a failure
        self._wake = threading.Condition()
        self._records: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.model: Any = None
        self.tokenizer: Any = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_device = self.device.torch_device if self.device else "cpu"
        dtype = torch.float32
        if self.device is not None and self.device.type == "cuda" and self.device.bf16:
            dtype = torch.bfloat16
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bars in the notebook
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=self.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                self.model_dir, dtype=dtype, trust_remote_code=self.trust_remote_code
            )
            model.to(torch_device)
            if self.adapter_dirs:
                model = self._load_adapters(model)
        except (OSError, ValueError) as exc:
            raise SwiftModelError(f"cannot load the model from {self.model_dir}: {str(exc).splitlines()[0]}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        model.eval()
        self.model = model
        self.torch_device = torch_device
        config = model.config
        limit = getattr(config, "max_position_embeddings", None) or getattr(self.tokenizer, "model_max_length", 4096)
        self.max_model_len = int(min(self._max_model_len or limit, limit))
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(eos_ids), 0)
        self.vocab_size = int(config.vocab_size)  # the width of the logits: token ids a request may name
        self.grammars = Grammars(self.tokenizer, self.vocab_size, sorted(eos_ids))
        try:
            self.tool_call_parser = parser_for_template(self.tokenizer.chat_template, self.tool_call_parser)
        except ValueError as exc:
            raise SwiftConfigError(str(exc)) from None
        self._thread = threading.Thread(target=self._loop, name=f"km-hf-engine-{self.served_name}", daemon=True)
        self._thread.start()

    def _load_adapters(self, model: Any) -> Any:
        from peft import PeftModel

        peft_model = None
        for name, folder in self.adapter_dirs.items():
            try:
                if peft_model is None:
                    peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=False)
                else:
                    peft_model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
            except (RuntimeError, ValueError, KeyError, OSError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SwiftModelError(
                    f"adapter '{name}' at {folder} does not fit the model {self.served_name}: {first[:200]}"
                ) from None
        return peft_model

    def shutdown(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for handle in self._drain():
            handle.push(RuntimeError("the server is shutting down"))
        self.model = None
        try:
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    # -- prompts ---------------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Token ids of the conversation (with ``tools`` rendered by the chat template) + the reply prompt."""
        return chat_prompt_ids(self.tokenizer, messages, tools)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- requests --------------------------------------------------------------------------------
    def submit(self, handle: RequestHandle) -> None:
        if self._stop.is_set():
            raise RuntimeError("the server is shutting down")
        with self._wake:
            self._waiting.append(handle)
            self._wake.notify()

    def records(self) -> list[RequestRecord]:
        with self._records_lock:
            return list(self._records)

    def pending(self) -> int:
        with self._wake:
            return len(self._waiting)

    def _drain(self) -> list[RequestHandle]:
        with self._wake:
            items = list(self._waiting)
            self._waiting.clear()
        return items

    def _next_batch(self) -> list[RequestHandle]:
        with self._wake:
            while not self._waiting and not self._stop.is_set():
                self._wake.wait(0.5)
            if self._stop.is_set():
                return []
            first = self._waiting[0]
            batch = [h for h in self._waiting if h.model == first.model and not h.cancelled.is_set()]
            batch = batch[: self.max_batch_size] or [first]
            chosen = {id(h) for h in batch}
            self._waiting = deque(h for h in self._waiting if id(h) not in chosen and not h.cancelled.is_set())
            return self._in_flight.take([h for h in batch if not h.cancelled.is_set()])

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self._run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not kill the server
                self._in_flight.fail_all(f"generation failed: {type(exc).__name__}: {str(exc)[:200]}")

    def _adapter_context(self, model_name: str) -> Any:
        if not self.adapter_dirs:
            return nullcontext()
        if model_name == self.served_name:
            return self.model.disable_adapter()
        self.model.set_adapter(model_name)
        return nullcontext()

    def _generator(self, seed: int | None) -> Any:
        import torch

        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        return generator

    def _new_row(self, handle: RequestHandle) -> Row:
        """A row of the batch; a request whose sampler cannot be built gets the error and leaves at once."""
        try:
            generator = self._generator(handle.params.seed)
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the batch down
            handle.push(EngineFailure(f"cannot sample with seed {handle.params.seed}: {str(exc)[:200]}"))
            handle.cancel()
            generator = None
        return Row(handle, self.eos_ids, self.tokenizer, generator)

    def _take_joiners(self, model_name: str, room: int) -> list[RequestHandle]:
        """Waiting requests for ``model_name`` that may join the running batch now.

        Only those queued before the oldest request for another model join, so a busy adapter cannot
        starve the others.
        """
        if room <= 0:
            return []
        with self._wake:
            joiners: list[RequestHandle] = []
            for handle in self._waiting:
                if handle.model != model_name or len(joiners) >= room:
                    break
                if not handle.cancelled.is_set():
                    joiners.append(handle)
            taken = {id(h) for h in joiners}
            if joiners:
                self._waiting = deque(h for h in self._waiting if id(h) not in taken and not h.cancelled.is_set())
            return self._in_flight.take(joiners)

    def _prefill(self, batch: list[RequestHandle]) -> tuple[list[Row], Any, Any, Any, Any]:
        """Left-pad the prompts into one batch and run them: rows, cache, mask, positions, last logits."""
        import torch
        from transformers import DynamicCache

        rows = [self._new_row(h) for h in batch]
        width = max(len(h.prompt_ids) for h in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, handle in enumerate(batch):
            n = len(handle.prompt_ids)
            ids[i, width - n :] = torch.tensor(handle.prompt_ids, dtype=torch.long)
            mask[i, width - n :] = 1
        ids, mask = ids.to(self.torch_device), mask.to(self.torch_device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        )
        for i, handle in enumerate(batch):  # echo: row t of the prompt's logits predicts its token t + 1
            k = getattr(handle, "prompt_logprobs", None)
            if k is not None:
                n = len(handle.prompt_ids)
                handle.prompt_logprob_items = prompt_entries(
                    out.logits[i, width - n :], handle.prompt_ids, k, self.tokenizer
                )
        return rows, cache, mask, positions[:, -1:], out.logits[:, -1, :].float()

    def _run_batch(self, batch: list[RequestHandle]) -> None:
        """Decode ``batch`` step by step; requests for the same model that arrive meanwhile join it."""
        import torch

        model_name = batch[0].model
        with torch.inference_mode(), self._adapter_context(model_name):
            rows, cache, mask, positions, logits = self._prefill(batch)
            can_join = joinable(cache)
            peak = len(rows)
            while rows and not self._stop.is_set():
                next_tokens, logprobs = step(logits, rows, self.tokenizer)
                keep = self._take_tokens(rows, next_tokens, logprobs, peak)
                if keep:
                    if len(keep) < len(rows):
                        index = torch.tensor(keep, device=mask.device)
                        cache.batch_select_indices(index)
                        mask, positions = mask[index], positions[index]
                        next_tokens = next_tokens[torch.tensor(keep)]
                        rows = [rows[p] for p in keep]
                    mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                    positions = positions + 1
                    out = self.model(
                        input_ids=next_tokens.to(mask.device).view(-1, 1),
                        attention_mask=mask,
                        position_ids=positions,
                        past_key_values=cache,
                        use_cache=True,
                    )
                    logits = out.logits[:, -1, :].float()
                else:
                    rows = []
                joiners = self._take_joiners(model_name, self.max_batch_size - len(rows)) if can_join else []
                if joiners:
                    new_rows, new_cache, new_mask, new_positions, new_logits = self._prefill(joiners)
                    if rows:
                        mask = merge_caches(cache, mask, new_cache, new_mask)
                        positions = torch.cat([positions, new_positions])
                        logits = torch.cat([logits, new_logits])
                        rows = rows + new_rows
                    else:
                        rows, cache, mask, positions, logits = new_rows, new_cache, new_mask, new_positions, new_logits
                    peak = max(peak, len(rows))
        for row in rows:  # only when stopping: tell the clients
            if row.finish is None:
                row.handle.push(RuntimeError("the server is shutting down"))

    def _take_tokens(
        self, rows: list[Row], next_tokens: Any, logprobs: dict[int, dict[str, Any]], peak: int
    ) -> list[int]:
        """Give each row its sampled token (or end it: cancelled, stopped, context full); finished rows are
        recorded. Returns the positions of the rows that go on."""
        keep: list[int] = []
        for pos, row in enumerate(rows):
            if row.handle.cancelled.is_set():
                row.finish = "cancelled"
            elif row.finish is None:  # not failed in step()
                self._add_token(row, int(next_tokens[pos]), logprobs.get(pos))
            if row.finish is None and len(row.handle.prompt_ids) + len(row.tokens) >= self.max_model_len:
                row.end("length")  # the context window is full
            if row.finish is None:
                keep.append(pos)
            else:
                self._record(row, peak)
        return keep

    @staticmethod
    def _add_token(row: Row, token: int, logprob: dict[str, Any] | None) -> None:
        try:
            row.add(token, logprob)
        except Exception as exc:  # noqa: BLE001 - one request's failure (grammar, decoding) stays its own
            row.fail(exc)

    def _record(self, row: Row, batch_size: int) -> None:
        handle = row.handle
        if row.finish in ("cancelled", "error"):
            return
        end = time.perf_counter()
        ttft = handle.first_token_at - handle.arrived if handle.first_token_at else end - handle.arrived
        record = RequestRecord(
            request_id=handle.request_id,
            model=handle.model,
            prompt_tokens=len(handle.prompt_ids),
            completion_tokens=len(row.tokens),
            ttft_s=ttft,
            e2e_s=end - handle.arrived,
            finish_reason=row.finish or "stop",
            batch_size=batch_size,
            stream=handle.stream,
        )
        with self._records_lock:
            self._records.append(record)
            if len(self._records) > 10_000:
                del self._records[:1000]
