"""Batch state of the transformers engine: one :class:`Row` per request, logit shaping, sampling, KV caches.

A request may carry more than sampling settings (:class:`GenerationRequest`): a grammar that constrains
the reply (``response_format``, forced tool calls), presence / frequency penalties, a logit bias, and
how many alternatives to report with each token's log-probability.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..logprobs import entries
from .base import Delta, EngineFailure, RequestHandle

_REPLACEMENT = "\ufffd"  # what decode() shows for an incomplete UTF-8 sequence


@dataclass
class GenerationRequest(RequestHandle):
    """A request with the OpenAI options beyond sampling (all off by default)."""

    index: int = 0  # the choice index in the reply (n > 1, lists of prompts)
    top_logprobs: int | None = None  # None: no log-probabilities; k: with k alternatives per token
    guide: Any = None  # a guided.Guide constraining the reply
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    logprob_items: list[dict[str, Any]] = field(default_factory=list)
    prompt_logprobs: int | None = None  # echo: score the prompt tokens too, with k alternatives each
    prompt_logprob_items: list[dict[str, Any]] = field(default_factory=list)  # tokens 2..n of the prompt


@dataclass
class TokenDelta(Delta):
    """A delta that also says how many tokens (and log-probability items) the text so far covers."""

    tokens_done: int = 0


def _option(handle: RequestHandle, name: str, default: Any = None) -> Any:
    return getattr(handle, name, default)


class Row:
    """Decoding state of one request inside a batch."""

    def __init__(self, handle: RequestHandle, eos: set[int], tokenizer: Any, generator: Any) -> None:
        self.handle = handle
        self.params = handle.params
        self.eos = eos
        self.tokenizer = tokenizer
        self.generator = generator
        self.tokens: list[int] = []
        self.sent = 0  # characters of text already pushed
        self.text = ""
        self.finish: str | None = None

    def add(self, token: int, logprob: dict[str, Any] | None = None) -> None:
        """Append a token, decide whether the request ends, and push the text that is now certain."""
        if self.handle.first_token_at is None:
            self.handle.first_token_at = time.perf_counter()
        guide = _option(self.handle, "guide")
        if guide is not None:
            guide.accept(token)
        if token in self.eos:
            self.finish = "stop"
            if logprob is not None and _option(self.handle, "prompt_logprobs") is not None:
                self.handle.logprob_items.append(logprob)  # echo: the end token is reported too, as vLLM does
        else:
            self.tokens.append(token)
            if logprob is not None:
                self.handle.logprob_items.append(logprob)
            self.text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
            if len(self.tokens) >= self.params.max_tokens:
                self.finish = "length"
        stop_at = self._stop_index()
        if stop_at is not None:
            self.text = self.text[:stop_at]
            self.finish = "stop"
        if self.finish is None:
            safe = len(self.text) - self._held_back()
            if safe > self.sent:
                self.handle.push(TokenDelta(self.text[self.sent : safe], tokens_done=len(self.tokens)))
                self.sent = safe
        else:
            self.end(self.finish)

    def fail(self, exc: BaseException) -> None:
        """This request alone failed (its bias, grammar or sampler): it gets the error and leaves the batch."""
        self.finish = "error"
        self.handle.push(EngineFailure(f"generation failed: {type(exc).__name__}: {str(exc)[:200]}"))

    def end(self, reason: str) -> None:
        """Push the rest of the text with the finish reason and the token counts."""
        self.finish = reason
        self.handle.push(
            TokenDelta(
                self.text[self.sent :].replace(_REPLACEMENT, ""),
                finish_reason=reason,
                prompt_tokens=len(self.handle.prompt_ids),
                completion_tokens=len(self.tokens),
                tokens_done=len(self.tokens),
            )
        )
        self.sent = len(self.text)

    def _stop_index(self) -> int | None:
        start = max(0, self.sent - max(map(len, self.params.stop), default=0))  # the sent text holds no stop
        hits = [i for s in self.params.stop if (i := self.text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def _held_back(self) -> int:
        """Characters at the end that may still change: a partial UTF-8 character or a stop-string prefix."""
        if self.text.endswith(_REPLACEMENT):
            return len(self.text) - len(self.text.rstrip(_REPLACEMENT))
        held = 0
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, len(self.text)), 0, -1):
                if self.text.endswith(stop[:k]):
                    held = max(held, k)
                    break
        return held


def sample(logits: Any, rows: list[Row]) -> Any:
    """The next token of every row (greedy rows: the most likely one); a row whose sampler fails leaves."""
    chosen = logits.argmax(dim=-1).cpu()
    for pos, row in enumerate(rows):
        if row.params.greedy or row.finish is not None:
            continue
        try:
            chosen[pos] = _sample_row(logits[pos], row)
        except Exception as exc:  # noqa: BLE001 - one request's failure stays its own
            row.fail(exc)
    return chosen


def _sample_row(logits: Any, row: Row) -> int:
    """One token for a sampling (non-greedy) row from its logits."""
    import torch

    params = row.params
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        cumulative = sorted_probs.cumsum(-1)
        cut = cumulative - sorted_probs > params.top_p  # keep the smallest set reaching top_p
        sorted_probs = sorted_probs.masked_fill(cut, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=row.generator).item())


def shape_logits(logits: Any, rows: list[Row]) -> bool:
    """Apply each row's logit bias, penalties and grammar to ``logits`` in place; True when any applied.

    A row whose shaping fails gets the error and leaves (:meth:`Row.fail`); the other rows go on.
    """
    shaped = False
    for pos, row in enumerate(rows):
        if row.finish is not None:
            continue
        try:
            shaped = _shape_row(logits[pos], row) or shaped
        except Exception as exc:  # noqa: BLE001 - one request's failure stays its own
            row.fail(exc)
    return shaped


def _shape_row(logits: Any, row: Row) -> bool:
    import torch

    handle, shaped = row.handle, False
    bias = _option(handle, "logit_bias")
    if bias:
        ids = torch.tensor(list(bias), device=logits.device)
        logits[ids] += torch.tensor(list(bias.values()), device=logits.device, dtype=logits.dtype)
        shaped = True
    presence, frequency = _option(handle, "presence_penalty", 0.0), _option(handle, "frequency_penalty", 0.0)
    if (presence or frequency) and row.tokens:
        counts = torch.bincount(torch.tensor(row.tokens), minlength=logits.shape[-1])[: logits.shape[-1]]
        counts = counts.to(logits.device, logits.dtype)
        logits -= frequency * counts + presence * (counts > 0).to(logits.dtype)
        shaped = True
    guide = _option(handle, "guide")
    if guide is not None:
        guide.mask(logits)
        shaped = True
    return shaped


def step(logits: Any, rows: list[Row], tokenizer: Any) -> tuple[Any, dict[int, dict[str, Any]]]:
    """Pick the next token of every row; and the log-probability items of the rows that asked for them."""
    wanted = [(pos, _option(row.handle, "top_logprobs")) for pos, row in enumerate(rows)]
    wanted = [(pos, k) for pos, k in wanted if k is not None]
    raw = logits.clone() if wanted else logits
    shape_logits(logits, rows)
    chosen = sample(logits, rows)
    items = entries(raw, [(pos, int(chosen[pos]), k) for pos, k in wanted], tokenizer) if wanted else {}
    return chosen, items


def joinable(cache: Any) -> bool:
    """Can new rows be merged into this cache? (plain full-attention layers only)"""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _left_pad(tensor: Any, length: int, dim: int) -> Any:
    import torch.nn.functional as F

    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim % tensor.dim()) + [missing, 0]
    return F.pad(tensor, pad)


def merge_caches(cache: Any, mask: Any, other: Any, other_mask: Any) -> Any:
    """Append ``other``'s rows to ``cache`` (left-padding the shorter one); return the merged mask."""
    import torch

    length = max(mask.shape[1], other_mask.shape[1])
    for layer, extra in zip(cache.layers, other.layers, strict=True):
        layer.keys = torch.cat([_left_pad(layer.keys, length, 2), _left_pad(extra.keys, length, 2)])
        layer.values = torch.cat([_left_pad(layer.values, length, 2), _left_pad(extra.values, length, 2)])
    return torch.cat([_left_pad(mask, length, 1), _left_pad(other_mask, length, 1)])
