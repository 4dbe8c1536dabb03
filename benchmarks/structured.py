"""What does constrained decoding (``response_format`` json_schema, xgrammar) cost on the transformers engine?

    python benchmarks/structured.py               # tiny model, 1 and 8 concurrent clients
    python benchmarks/structured.py --model small # an 18.6M-parameter random Qwen2 (benchmarks/serve.py builds it)
    python benchmarks/structured.py --smoke       # a few seconds: what CI runs

The same chat requests go to one server with and without a JSON schema (an array of short strings of a
fixed length, so a random model writes as many tokens either way), rounds alternating between the two
so both see the same machine load. The table shows the medians of the rounds: aggregate tokens/s (from
``usage``), their ratio (target >= 0.8) and the median request latency.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ["List some fruit.", "Name a few cities.", "Give me colours.", "Write some words."]


def schema(items: int) -> dict:
    """A JSON array of exactly ``items`` short strings."""
    string = {"type": "string", "minLength": 1, "maxLength": 6}
    return {
        "type": "object",
        "properties": {"items": {"type": "array", "items": string, "minItems": items, "maxItems": items}},
        "required": ["items"],
        "additionalProperties": False,
    }


def one_round(client, clients: int, max_tokens: int, fmt: dict | None) -> tuple[float, float]:
    """Aggregate tokens/s and median latency of ``clients`` concurrent requests."""

    def ask(i: int) -> tuple[int, float]:
        started = time.perf_counter()
        extra = {"response_format": fmt} if fmt else {}
        reply = client.chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            temperature=0,
            max_tokens=max_tokens,
            **extra,
        )
        return reply.usage.completion_tokens, time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(ask, range(clients)))
    elapsed = time.perf_counter() - started
    return sum(n for n, _ in results) / elapsed, statistics.median(t for _, t in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny', 'small' or a model folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--items", type=int, default=24, help="strings in the constrained array")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (< 60 s)")
    args = parser.parse_args()
    if args.smoke:
        import torch

        torch.set_num_threads(1)  # a busy CI machine: two spinning threads cost more than they bring
        args.model, args.rounds, args.max_tokens, args.items = "tiny", 1, 24, 4

    import tempfile

    import kernel_magics as km
    from kernel_magics.config import settings
    from kernel_magics.testing import make_tiny_model

    work = Path(tempfile.mkdtemp(prefix="km-bench-structured-"))
    settings.cache_dir = str(work / "cache")
    model = args.model
    if model == "tiny":
        model = str(make_tiny_model(work / "tiny", "qwen2"))
    elif model == "small":
        from serve import small_model

        model = str(small_model(work / "small"))
    server = km.serve(model, backend="transformers", served_model_name="base", name="bench-structured")
    try:
        client = server.client(max_retries=0, timeout=600)
        fmt = {"type": "json_schema", "json_schema": {"name": "items", "schema": schema(args.items)}}
        one_round(client, 1, 8, fmt)  # compile the grammar and warm up once
        print(f"model {args.model}, max_tokens {args.max_tokens}, {args.rounds} alternating rounds (medians)")
        print(f"{'clients':>7} | {'free tok/s':>10} | {'schema tok/s':>12} | {'ratio':>5} | latency free / schema")
        for clients in (1,) if args.smoke else (1, 8):
            free, constrained = [], []
            for _ in range(args.rounds):
                free.append(one_round(client, clients, args.max_tokens, None))
                constrained.append(one_round(client, clients, args.max_tokens, fmt))
            f_tps = statistics.median(x for x, _ in free)
            c_tps = statistics.median(x for x, _ in constrained)
            f_lat = statistics.median(t for _, t in free)
            c_lat = statistics.median(t for _, t in constrained)
            print(
                f"{clients:>7} | {f_tps:>10.0f} | {c_tps:>12.0f} | {c_tps / f_tps:>5.2f} | "
                f"{f_lat * 1000:.0f} ms / {c_lat * 1000:.0f} ms"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
