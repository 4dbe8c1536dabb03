"""Token log-probabilities in the two OpenAI shapes.

The engine records one :func:`entry` per generated token (the chosen token's log-probability under the
model's own distribution, before temperature, penalties or grammar masks, as vLLM reports by default,
and the ``k`` most likely alternatives). The app turns a list of entries into the chat shape
(``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``) or the completions shape
(``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}``).
"""

from __future__ import annotations

from typing import Any


def entries(logits: Any, rows: list[tuple[int, int, int]], tokenizer: Any) -> dict[int, dict[str, Any]]:
    """Entries for ``rows`` = (position in the batch, chosen token, k) from raw ``logits`` [batch, vocab]."""
    import torch

    positions = torch.tensor([pos for pos, _, _ in rows], device=logits.device)
    logprobs = torch.log_softmax(logits[positions].float(), dim=-1).cpu()
    out: dict[int, dict[str, Any]] = {}
    for i, (pos, token, k) in enumerate(rows):
        top: list[dict[str, Any]] = []
        if k > 0:
            values, ids = logprobs[i].topk(k)
            top = [_token(tokenizer, int(t), float(v)) for v, t in zip(values, ids, strict=True)]
        out[pos] = dict(_token(tokenizer, token, float(logprobs[i, token])), top_logprobs=top)
    return out


def _token(tokenizer: Any, token: int, logprob: float) -> dict[str, Any]:
    text = tokenizer.decode([token])
    return {"token": text, "logprob": max(logprob, -9999.0), "bytes": list(text.encode("utf-8"))}


def chat_logprobs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``logprobs`` object of a chat choice (or chunk)."""
    return {"content": items, "refusal": None}


def completion_logprobs(items: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """The ``logprobs`` object of a text-completion choice (``offset``: characters of text before these)."""
    offsets = []
    for item in items:
        offsets.append(offset)
        offset += len(item["token"])
    return {
        "tokens": [item["token"] for item in items],
        "token_logprobs": [item["logprob"] for item in items],
        "top_logprobs": [{t["token"]: t["logprob"] for t in item["top_logprobs"]} for item in items],
        "text_offset": offsets,
    }


def prompt_entries(logits: Any, prompt_ids: list[int], k: int, tokenizer: Any) -> list[dict[str, Any]]:
    """Entries for prompt tokens 2..n from the prompt's own ``logits`` [n, vocab] (row t predicts token t + 1)."""
    import torch

    logprobs = torch.log_softmax(logits[: len(prompt_ids) - 1].float(), dim=-1).cpu()
    out = []
    for t, token in enumerate(prompt_ids[1:]):
        top: list[dict[str, Any]] = []
        if k > 0:
            values, ids = logprobs[t].topk(k)
            top = [_token(tokenizer, int(i), float(v)) for v, i in zip(values, ids, strict=True)]
        out.append(dict(_token(tokenizer, token, float(logprobs[t, token])), top_logprobs=top))
    return out


def echo_prompt(choice: dict[str, Any], handle: Any, tokenizer: Any) -> None:
    """Put the prompt in front of a completion choice's text and log-probabilities (``echo``); the first
    prompt token has no log-probability (None), as in OpenAI's API."""
    first = tokenizer.decode(handle.prompt_ids[:1])
    prompt_text = tokenizer.decode(handle.prompt_ids)
    choice["text"] = prompt_text + choice["text"]
    if choice["logprobs"] is None:
        return
    echoed = completion_logprobs(handle.prompt_logprob_items + handle.logprob_items, offset=len(first))
    for key, value in (("tokens", first), ("token_logprobs", None), ("top_logprobs", None), ("text_offset", 0)):
        echoed[key].insert(0, value)
    choice["logprobs"] = echoed


def check_token_ids(prompts: list[list[int]], vocab_size: int | None) -> None:
    """A 400 for a token-id prompt naming an id outside the vocabulary."""
    from .protocol import APIError

    if vocab_size and any(not 0 <= token < vocab_size for prompt in prompts for token in prompt):
        raise APIError(f"prompt token ids must be in [0, {vocab_size})", param="prompt")
