"""Chat and text completions on an in-process engine, whole or streamed as server-sent events.

One request may ask for several choices (``n``, a list of prompts): each choice is its own engine request
(its own seed, ``seed + i``), so they batch together. Beyond text a choice may carry log-probabilities,
follow a JSON schema (``response_format``, by constrained decoding) or call tools (rendered by the chat
template, parsed from the reply into OpenAI ``tool_calls``; a forced ``tool_choice`` is a grammar too).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from .engines.base import Delta, Engine, RequestHandle, SamplingParams
from .engines.hf_batch import GenerationRequest
from .guards import answer, build_prompt, chars, check_fits, context_error, engine_error, timeout_error
from .limits import ServeLimits, check_images, check_queue, check_sampling
from .logprobs import chat_logprobs, check_token_ids, completion_logprobs, echo_prompt
from .protocol import APIError, ChatCompletionRequest, CompletionRequest, SamplingRequest, new_id, now
from .protocol import usage as usage_of
from .request_checks import check_logit_bias, check_schema
from .tools import choice_of_tools, forced_call_grammar, may_start_call, parse_tool_calls


@dataclass
class Extras:
    """What a request asks for beyond sampled text (shared by its choices)."""

    top_logprobs: int | None = None
    prompt_logprobs: int | None = None  # echo: log-probabilities of the prompt tokens, k alternatives each
    guides: Callable[[], Any] | None = None
    parser: str | None = None  # tool-call format to parse replies with


# -- chat ----------------------------------------------------------------------------------------------
async def chat_reply(
    engine: Engine, body: ChatCompletionRequest, stream_interval_s: float, limits: ServeLimits, request: Request
) -> Any:
    check_sampling(body, limits)
    check_images(body.messages, limits)
    check_queue(engine, limits, body.n)
    vision = getattr(engine, "accepts_images", False)  # image_url parts go to engines that take images
    messages = [_message(m, vision) for m in body.messages]
    tools, extras = _chat_extras(engine, body)
    check_fits(engine, sum(chars(m["content"]) for m in messages), "messages")
    prompt_ids = await build_prompt(engine.chat_prompt, messages, "messages", **({"tools": tools} if tools else {}))
    handles = _submit(engine, body, [prompt_ids], body.limit(), "chatcmpl", stream_interval_s, extras, limits)
    if body.stream:
        return sse(_chat_events(handles, body, extras), limits.request_timeout_s)
    results = await answer(_all(handles), handles, request, limits.request_timeout_s)
    choices = []
    for handle, (text, finish, _, _) in zip(handles, results, strict=True):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if extras.parser:
            content, calls = parse_tool_calls(text, extras.parser)
            if calls:
                message, finish = {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"
        lp = chat_logprobs(handle.logprob_items) if extras.top_logprobs is not None else None
        choices.append({"index": handle.index, "message": message, "logprobs": lp, "finish_reason": finish})
    prompt_tokens = results[0][2]
    return {
        "id": handles[0].request_id,
        "object": "chat.completion",
        "created": now(),
        "model": body.model,
        "choices": choices,
        "usage": usage_of(prompt_tokens, sum(r[3] for r in results)),
    }


def _message(message: Any, vision: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": message.role if message.role != "developer" else "system",
        "content": message.parts() if vision else message.text(),
    }
    extra = message.model_extra or {}
    for key in ("tool_calls", "tool_call_id", "name"):
        if extra.get(key) is not None:
            out[key] = extra[key]
    return out


def _chat_extras(engine: Engine, body: ChatCompletionRequest) -> tuple[list[dict[str, Any]] | None, Extras]:
    """The tools to render and the request's extras (log-probabilities, grammar, tool-call parser)."""
    extras = Extras(top_logprobs=(body.top_logprobs or 0) if body.logprobs else None)
    grammars = getattr(engine, "grammars", None)
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
    for tool in tools:
        check_schema(tool["function"].get("parameters", {}), "tools")
    forced = False
    if tools:
        parser = getattr(engine, "tool_call_parser", None)
        if parser is None:
            raise APIError(
                "tools: this model's chat template does not render tools; serve a model whose template does, "
                "or name the format with --tool-call-parser",
                param="tools",
            )
        tools, forced = choice_of_tools(tools, body.tool_choice)
        extras.parser = parser if tools else None
        if forced:
            extras.guides = grammars.wrapped(*forced_call_grammar(tools, parser), param="tool_choice")
    elif body.tool_choice not in (None, "none", "auto"):
        raise APIError("tool_choice needs tools", param="tool_choice")
    schema = body.response_format.schema() if body.response_format is not None else None
    if schema is not None:
        if forced:
            raise APIError("response_format cannot be combined with a forced tool_choice", param="response_format")
        check_schema(schema, "response_format")
        extras.guides = grammars.json_schema(schema)
    return tools or None, extras


def _content_frame(empty_chunk: dict[str, Any]) -> tuple[str, str]:
    """The server-sent event of a plain content chunk around its text: every such chunk of a choice differs
    only in the text, so the rest is encoded once."""
    head, tail = json.dumps(empty_chunk, ensure_ascii=False).rsplit('"content": ""', 1)
    return "data: " + head + '"content": ', tail + "\n\n"


async def _chat_events(
    handles: list[GenerationRequest], body: ChatCompletionRequest, extras: Extras
) -> AsyncIterator[dict[str, Any] | str]:
    rid, created, model = handles[0].request_id, now(), body.model

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice]}

    fast = {h.index: _content_frame(chunk(h.index, {"content": ""})) for h in handles}
    for handle in handles:
        yield chunk(handle.index, {"role": "assistant", "content": ""})
    texts = {h.index: "" for h in handles}
    sent = dict.fromkeys(texts, 0)
    used = dict.fromkeys(texts, 0)
    prompt_tokens = completion_tokens = 0
    async for handle, delta in merged(handles):
        i = handle.index
        texts[i] += delta.text
        lp = None
        if extras.top_logprobs is not None:
            done = getattr(delta, "tokens_done", len(handle.logprob_items))
            lp, used[i] = chat_logprobs(handle.logprob_items[used[i] : done]), done
        held = may_start_call(texts[i], extras.parser) if extras.parser and delta.finish_reason is None else 0
        piece = texts[i][sent[i] : len(texts[i]) - held]
        if delta.finish_reason is None:
            if piece or lp:
                sent[i] += len(piece)
                yield (
                    chunk(i, {"content": piece}, lp=lp)
                    if lp
                    else fast[i][0] + json.dumps(piece, ensure_ascii=False) + fast[i][1]
                )
            continue
        finish = delta.finish_reason
        calls: list[dict[str, Any]] = []
        if extras.parser:
            content, calls = parse_tool_calls(texts[i], extras.parser)
            piece = (content or "")[sent[i] :] if calls else piece
        if piece or lp:
            yield chunk(i, {"content": piece}, lp=lp)
        if calls:
            finish = "tool_calls"
            deltas = [dict(call, index=k) for k, call in enumerate(calls)]
            yield chunk(i, {"tool_calls": deltas})
        yield chunk(i, {}, finish)
        prompt_tokens = delta.prompt_tokens
        completion_tokens += delta.completion_tokens
    if body.include_usage:
        final = chunk(0, {})
        final["choices"], final["usage"] = [], usage_of(prompt_tokens, completion_tokens)
        yield final


# -- text completions ----------------------------------------------------------------------------------
async def completion_reply(
    engine: Engine, body: CompletionRequest, stream_interval_s: float, limits: ServeLimits, request: Request
) -> Any:
    check_sampling(body, limits)
    check_queue(engine, limits, len(body.texts()) * body.n, "prompt" if isinstance(body.prompt, list) else "n")
    if body.echo and not getattr(engine, "supports_echo", False):
        raise APIError(f"echo is not supported by the {getattr(engine, 'name', '')} engine", param="echo")
    if body.echo and body.stream:
        raise APIError("echo cannot be combined with stream", param="echo")
    texts = body.texts()
    for text in texts:
        if isinstance(text, str):
            check_fits(engine, len(text), "prompt")
    prompts = [p if isinstance(p, list) else await build_prompt(engine.encode, p, "prompt") for p in texts]
    if not all(prompts):
        raise APIError("the prompt is empty", param="prompt")
    check_token_ids(prompts, getattr(engine, "vocab_size", None))
    extras = Extras(top_logprobs=body.logprobs, prompt_logprobs=body.logprobs if body.echo else None)
    handles = _submit(engine, body, prompts, body.limit(), "cmpl", stream_interval_s, extras, limits)
    if body.stream:
        return sse(_completion_events(handles, body, extras), limits.request_timeout_s)
    results = await answer(_all(handles), handles, request, limits.request_timeout_s)
    choices = [
        {
            "index": handle.index,
            "text": text,
            "logprobs": completion_logprobs(handle.logprob_items) if extras.top_logprobs is not None else None,
            "finish_reason": finish,
        }
        for handle, (text, finish, _, _) in zip(handles, results, strict=True)
    ]
    if body.echo:
        for choice, handle in zip(choices, handles, strict=True):
            echo_prompt(choice, handle, engine.tokenizer)
    prompt_tokens = sum(len(p) for p in prompts)
    return {
        "id": handles[0].request_id,
        "object": "text_completion",
        "created": now(),
        "model": body.model,
        "choices": choices,
        "usage": usage_of(prompt_tokens, sum(r[3] for r in results)),
    }


async def _completion_events(
    handles: list[GenerationRequest], body: CompletionRequest, extras: Extras
) -> AsyncIterator[dict[str, Any]]:
    rid, created = handles[0].request_id, now()
    used = {h.index: 0 for h in handles}
    offsets = dict.fromkeys(used, 0)
    prompt_tokens = {h.index: len(h.prompt_ids) for h in handles}
    completion_tokens = 0
    async for handle, delta in merged(handles):
        i = handle.index
        lp = None
        if extras.top_logprobs is not None:
            done = getattr(delta, "tokens_done", len(handle.logprob_items))
            lp = completion_logprobs(handle.logprob_items[used[i] : done], offsets[i])
            used[i] = done
            offsets[i] += sum(len(t) for t in lp["tokens"])
        if delta.text or delta.finish_reason is not None or lp:
            choice = {"index": i, "text": delta.text, "logprobs": lp, "finish_reason": delta.finish_reason}
            yield {"id": rid, "object": "text_completion", "created": created, "model": body.model, "choices": [choice]}
        if delta.finish_reason is not None:
            completion_tokens += delta.completion_tokens
    if body.include_usage:
        total_prompt = sum(p for i, p in prompt_tokens.items() if i % body.n == 0)
        yield {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [],
            "usage": usage_of(total_prompt, completion_tokens),
        }


# -- shared --------------------------------------------------------------------------------------------
def _submit(
    engine: Engine,
    body: SamplingRequest,
    prompts: list[list[int]],
    limit: int | None,
    prefix: str,
    stream_interval_s: float,
    extras: Extras,
    limits: ServeLimits,
) -> list[GenerationRequest]:
    """Check every prompt against the context window, then queue ``n`` choices per prompt."""
    for prompt_ids in prompts:
        room = engine.max_model_len - len(prompt_ids)
        if room <= 0 or (limit is not None and limit > room):
            raise context_error(engine, str(len(prompt_ids)), "messages" if prefix == "chatcmpl" else "prompt", limit)
    loop, rid = asyncio.get_running_loop(), new_id(prefix)
    bias = check_logit_bias(body.logit_bias, getattr(engine, "vocab_size", None))
    handles = []
    for p, prompt_ids in enumerate(prompts):
        for j in range(body.n):
            params = SamplingParams(
                max_tokens=limit
                if limit is not None
                else min(engine.max_model_len - len(prompt_ids), limits.default_max_tokens),
                temperature=1.0 if body.temperature is None else body.temperature,
                top_p=1.0 if body.top_p is None else body.top_p,
                stop=tuple(body.stop or ()),
                seed=None if body.seed is None else body.seed + p * body.n + j,
            )
            handles.append(
                GenerationRequest(
                    request_id=rid,
                    model=body.model,
                    prompt_ids=prompt_ids,
                    params=params,
                    loop=loop,
                    stream=body.stream,
                    stream_interval_s=stream_interval_s if body.stream else 0.0,
                    index=p * body.n + j,
                    top_logprobs=extras.top_logprobs,
                    prompt_logprobs=extras.prompt_logprobs,
                    guide=extras.guides() if extras.guides else None,
                    presence_penalty=body.presence_penalty or 0.0,
                    frequency_penalty=body.frequency_penalty or 0.0,
                    logit_bias=bias or None,
                )
            )
    try:
        for handle in handles:
            engine.submit(handle)
    except RuntimeError as exc:
        for handle in handles:
            handle.cancel()
        raise APIError(str(exc), status=503, type="server_error") from None
    return handles


async def collect(handle: RequestHandle) -> tuple[str, str, int, int]:
    """The whole reply of one request: text, finish reason, prompt and completion tokens."""
    parts: list[str] = []
    try:
        async for delta in handle.deltas():
            parts.append(delta.text)
            if delta.finish_reason is not None:
                return "".join(parts), delta.finish_reason, delta.prompt_tokens, delta.completion_tokens
    except Exception as exc:  # noqa: BLE001 - every failure reaches the client as an OpenAI error
        raise engine_error(exc) from None
    raise APIError("the request ended without a result", status=503, type="server_error")


async def _all(handles: list[GenerationRequest]) -> list[tuple[str, str, int, int]]:
    return list(await asyncio.gather(*(collect(h) for h in handles)))


async def merged(handles: list[GenerationRequest]) -> AsyncIterator[tuple[GenerationRequest, Delta]]:
    """The deltas of several requests as they come (one request: straight through)."""
    if len(handles) == 1:
        async for delta in handles[0].deltas():
            yield handles[0], delta
        return
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump(handle: GenerationRequest) -> None:
        try:
            async for delta in handle.deltas():
                await queue.put((handle, delta))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            await queue.put(exc)
        finally:
            await queue.put(None)

    tasks = [asyncio.ensure_future(pump(h)) for h in handles]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        for handle in handles:
            handle.cancel()


def sse(events: AsyncIterator[dict[str, Any] | str], timeout_s: float | None = None) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                async for event in events:
                    yield event if isinstance(event, str) else f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except TimeoutError:
            yield f"data: {json.dumps(timeout_error(timeout_s).body())}\n\n"
        except Exception as exc:  # noqa: BLE001 - the engine failed or stopped mid-stream
            yield f"data: {json.dumps(engine_error(exc).body())}\n\n"
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
