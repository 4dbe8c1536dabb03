"""The lean streaming client the serving benchmarks time any OpenAI server with, run in its own process.

Plain asyncio streams, one keep-alive connection per concurrent client, and JSON parsed only where needed
(the first content chunk for TTFT, the usage chunk for the token count). On a small machine the clients
share the cores with the server; an httpx client spends ~10x more CPU per chunk than our server does, and
that would be charged to the server's side of the ratio. Used by ``serve.py`` and ``real_serve.py``; not a
benchmark itself (the leading underscore keeps it out of ``make bench`` and the smoke test).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


async def _post_stream(reader: Any, writer: Any, host: str, path: str, body: bytes, headers: str) -> Any:
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n".encode()
        + body
    )
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"server answered {status.decode().strip()}")
    chunked = False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        chunked |= line.lower().startswith(b"transfer-encoding: chunked")
    if not chunked:
        raise RuntimeError("expected a chunked event stream")
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def through_server(
    url: str, model: str, batch: list[list[dict[str, str]]], max_tokens: int, api_key: str | None = None
) -> tuple[int, list[float], float]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    headers = f"Authorization: Bearer {api_key}\r\n" if api_key else ""

    async def one(messages: list[dict[str, str]]) -> tuple[int, float]:
        body = json.dumps(
            {
                "model": model,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        started = time.perf_counter()
        ttft = None
        tokens = 0
        buffer = b""
        try:
            async for data in _post_stream(
                reader, writer, parts.netloc, parts.path + "/chat/completions", body, headers
            ):
                buffer += data
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    if ttft is None and b'"content": "' in event.replace(b'"content":"', b'"content": "'):
                        if json.loads(event[6:])["choices"][0]["delta"].get("content"):
                            ttft = time.perf_counter() - started
                    elif b'"usage": {' in event or b'"usage":{' in event:
                        tokens = json.loads(event[6:])["usage"]["completion_tokens"]
        finally:
            writer.close()
        return tokens, ttft or 0.0

    started = time.perf_counter()
    results = await asyncio.gather(*(one(m) for m in batch))
    wall = time.perf_counter() - started
    return sum(t for t, _ in results), [ttft for _, ttft in results], wall


class ClientProcess:
    """The HTTP clients run in their own process, as real clients would: they do not share our GIL."""

    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_client_worker, args=(child,), daemon=True)
        self.process.start()

    def run(self, url: str, model: str, batch: list, max_tokens: int) -> tuple[int, list[float], float]:
        self.conn.send((url, model, batch, max_tokens))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(10)


def _client_worker(conn: Any) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(asyncio.run(through_server(*job)))
