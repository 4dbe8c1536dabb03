"""Soak the transformers server on loopback: many clients, mixed traffic, a bounded time.

    python benchmarks/soak.py                  # 64 clients for 60 s on the tiny model
    python benchmarks/soak.py --smoke          # 8 clients for 5 s (CI)
    python benchmarks/soak.py --clients 32 --seconds 120

Each client loops over four kinds of request, chosen at random: a normal chat completion, a streamed
one read to the end, a streamed one whose client leaves after the first chunk, and a malformed one
(bad JSON, a wrong field, an oversized stop list). It prints p50 / p99 latency per kind, the answers by
status, the server process's resident memory before and after, and exits 1 on a hang (no answer within
``--hang-s``), an unexpected 5xx, or memory growth beyond ``--max-growth-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELLO = [{"role": "user", "content": "What is the capital of France?"}]
MALFORMED = (
    b"{not json",
    json.dumps({"model": "tiny", "messages": HELLO, "temperature": 7}).encode(),
    json.dumps({"model": "tiny", "messages": HELLO, "stop": ["x" * 1000] * 9}).encode(),
    json.dumps({"model": "tiny", "messages": HELLO, "seed": 2**64}).encode(),
    json.dumps({"model": "nope", "messages": HELLO}).encode(),
)


def rss_mb() -> float:
    """Resident memory of this process (the server runs in it) in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def one_request(client: Any, url: str, kind: str, rng: random.Random, max_tokens: int) -> int:
    """Send one request of ``kind``; its HTTP status (0 for a client that left on purpose)."""
    body = {"model": "tiny", "messages": HELLO, "max_tokens": rng.randint(1, max_tokens), "temperature": 0.7}
    if kind == "normal":
        response = await client.post(url, json=body)
        return response.status_code
    if kind == "malformed":
        response = await client.post(url, content=rng.choice(MALFORMED), headers={"content-type": "application/json"})
        return response.status_code
    async with client.stream("POST", url, json={**body, "stream": True}) as response:
        async for line in response.aiter_lines():
            if kind == "leaving" and line.startswith("data: "):
                return 0  # the client leaves after the first chunk: the server must cancel the request
            if line == "data: [DONE]":
                break
        return response.status_code


async def client_loop(index: int, url: str, until: float, hang_s: float, max_tokens: int, out: dict) -> None:
    import httpx

    rng = random.Random(index)
    async with httpx.AsyncClient(timeout=hang_s) as client:
        while time.monotonic() < until:
            kind = rng.choice(("normal", "streaming", "leaving", "malformed"))
            started = time.perf_counter()
            try:
                status = await one_request(client, url, kind, rng, max_tokens)
            except httpx.TimeoutException:
                out["hangs"].append(kind)
                continue
            except httpx.HTTPError as exc:
                out["errors"][f"{kind}: {type(exc).__name__}"] += 1
                continue
            out["latency"][kind].append(time.perf_counter() - started)
            out["status"][(kind, status)] += 1


def soak(clients: int, seconds: float, hang_s: float = 30.0, max_tokens: int = 24) -> dict[str, Any]:
    """Run the soak against a fresh tiny-model server; the figures as a dict."""
    import httpx

    import kernel_magics as km
    from kernel_magics.testing import make_tiny_model, tiny_model_path

    make_tiny_model(tiny_model_path("qwen2"), "qwen2")
    server = km.serve("tiny", backend="transformers", name="soak", port=_free_port(), max_waiting=4 * clients)
    try:
        url = server.url + "/chat/completions"
        asyncio.run(_warm(url))
        before = rss_mb()
        out: dict[str, Any] = {
            "latency": defaultdict(list),
            "status": Counter(),
            "hangs": [],
            "errors": Counter(),
        }
        until = time.monotonic() + seconds

        async def main() -> None:
            await asyncio.gather(*(client_loop(i, url, until, hang_s, max_tokens, out) for i in range(clients)))

        asyncio.run(main())
        healthy = httpx.get(server.base_url + "/health", timeout=hang_s).status_code == 200
        after = rss_mb()
    finally:
        server.stop()
    unexpected = sum(n for (kind, status), n in out["status"].items() if status >= 500 and status != 503)
    return {**out, "rss_before_mb": before, "rss_after_mb": after, "healthy": healthy, "unexpected_5xx": unexpected}


def _free_port() -> int:
    """A port the system calls free now (away from 8000+, where other servers of this machine start)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _warm(url: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(3):
            await client.post(url, json={"model": "tiny", "messages": HELLO, "max_tokens": 4})


def report(figures: dict[str, Any], clients: int, seconds: float) -> list[str]:
    lines = [f"soak: {clients} clients for {seconds:g} s on the tiny model (transformers engine, loopback)"]
    lines.append(f"{'kind':<10} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, values in sorted(figures["latency"].items()):
        values = sorted(values)
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        lines.append(f"{kind:<10} {len(values):>8} {statistics.median(values) * 1000:>8.0f} {p99 * 1000:>8.0f}")
    answers = ", ".join(f"{k}/{s}: {n}" for (k, s), n in sorted(figures["status"].items()))
    lines.append(f"answers: {answers}")
    lines.append(
        f"hangs: {len(figures['hangs'])}, unexpected 5xx: {figures['unexpected_5xx']}, "
        f"client errors: {dict(figures['errors']) or 0}, healthy after: {figures['healthy']}"
    )
    growth = figures["rss_after_mb"] - figures["rss_before_mb"]
    lines.append(f"resident memory {figures['rss_before_mb']:.0f} -> {figures['rss_after_mb']:.0f} MiB ({growth:+.0f})")
    return lines


def failures(figures: dict[str, Any], max_growth_mb: float) -> list[str]:
    problems = []
    if figures["hangs"]:
        problems.append(f"{len(figures['hangs'])} requests got no answer")
    if figures["unexpected_5xx"]:
        problems.append(f"{figures['unexpected_5xx']} unexpected 5xx answers")
    if not figures["healthy"]:
        problems.append("the server was not healthy afterwards")
    if figures["rss_after_mb"] - figures["rss_before_mb"] > max_growth_mb:
        problems.append(f"memory grew by more than {max_growth_mb:g} MiB")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--hang-s", type=float, default=30.0, help="no answer within this long counts as a hang")
    parser.add_argument("--max-growth-mb", type=float, default=256.0)
    parser.add_argument("--smoke", action="store_true", help="8 clients for 5 s")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.seconds = 8, 5.0
    figures = soak(args.clients, args.seconds, args.hang_s)
    print("\n".join(report(figures, args.clients, args.seconds)))
    problems = failures(figures, args.max_growth_mb)
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
