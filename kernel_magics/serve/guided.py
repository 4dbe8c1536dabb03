"""Constrained decoding for the transformers engine with xgrammar: JSON objects, JSON schemas, forced tool calls.

A :class:`Grammars` per engine compiles grammars against the model's vocabulary (compiled grammars are
cached by xgrammar). Each constrained request gets a :class:`Guide`: before sampling it masks every token
the grammar forbids at this point; after sampling it advances the grammar by the chosen token. Once the
value is complete only the end-of-sequence tokens stay allowed, so the reply ends there.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Any

from .protocol import APIError


class Grammars:
    """Compiles grammars for one tokenizer (lazily: xgrammar is imported on the first constrained request)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.stop_ids = stop_ids
        self._compiler: Any = None
        self._lock = threading.Lock()

    def _compiler_or_error(self) -> Any:
        with self._lock:
            if self._compiler is None:
                try:
                    import xgrammar as xgr
                except ImportError:
                    raise APIError(
                        "constrained decoding needs xgrammar (pip install xgrammar)", param="response_format"
                    ) from None
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_ids
                )
                self._compiler = xgr.GrammarCompiler(info)
            return self._compiler

    def json_schema(self, schema: dict[str, Any], param: str = "response_format") -> Callable[[], Guide]:
        """Guides for replies that are one JSON value following ``schema`` (compact: no free whitespace)."""
        return self.wrapped("", schema, "", param)

    def wrapped(self, prefix: str, schema: dict[str, Any], suffix: str, param: str = "tools") -> Callable[[], Guide]:
        """Guides for ``prefix`` + a JSON value following ``schema`` + ``suffix`` (forced tool calls).

        Compiles once (raising a 400 :class:`APIError` for a schema xgrammar cannot use) and returns a
        factory: each choice of the request needs its own :class:`Guide`.
        """
        import xgrammar as xgr

        compiler = self._compiler_or_error()
        try:
            grammar = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
            if prefix or suffix:
                pieces = [_literal(prefix)] if prefix else []
                pieces += [grammar] + ([_literal(suffix)] if suffix else [])
                grammar = xgr.Grammar.concat(*pieces)
            compiled = compiler.compile_grammar(grammar)
        except (RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = f"{param}: the JSON schema cannot be used for constrained decoding: {first[:200]}"
            raise APIError(message, param=param) from None
        return functools.partial(Guide, compiled, self.vocab_size)


def _literal(text: str) -> Any:
    import xgrammar as xgr

    return xgr.Grammar.from_ebnf(f"root ::= {json.dumps(text)}")


class Guide:
    """The grammar state of one request: masks logits, advances by the sampled token."""

    def __init__(self, compiled: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.vocab_size = vocab_size
        self._bits: Any = None

    def mask(self, logits: Any) -> None:
        """Set the logits of forbidden tokens to -inf, in place (``logits``: one row, any device)."""
        import torch

        if self.matcher.is_terminated():
            return
        self.matcher.fill_next_token_bitmask(self.bitmask)
        if self._bits is None:
            self._bits = torch.arange(32, dtype=torch.int32)
        words = self.bitmask[0]
        allowed = ((words.unsqueeze(-1) >> self._bits) & 1).bool().flatten()[: logits.shape[-1]]
        logits.masked_fill_(~allowed.to(logits.device), float("-inf"))

    def accept(self, token: int) -> None:
        if not self.matcher.is_terminated():
            self.matcher.accept_token(int(token))

    @property
    def finished(self) -> bool:
        return bool(self.matcher.is_terminated())
