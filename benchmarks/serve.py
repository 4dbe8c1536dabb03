"""What does the OpenAI server cost next to calling the engine directly?

    python benchmarks/serve.py                     # transformers engine, tiny model, 1 / 8 / 32 clients
    python benchmarks/serve.py --vllm              # also vLLM: its OpenAI server (ours to start) vs AsyncLLM
    python benchmarks/serve.py --model small       # an 18.6M-parameter random Qwen2 (built here): CPU-realistic cost
    python benchmarks/serve.py --model PATH --device cuda --max-tokens 128
    python benchmarks/serve.py --smoke             # tiny sizes: checks the script runs

The same prompts (user turns of the packaged SFT data, greedy, a fixed number of new tokens) go to the
engine in-process and through HTTP streaming (server-sent events, a lean client in its own process) with
1, 8 and 32 concurrent clients. Both sides are alive for the whole comparison (for vLLM: our server's
``vllm serve`` process and an ``AsyncLLM`` in this process; the side not being measured is idle). Round 0
warms both up; in every round both sides serve the same batch, the side that goes first alternating.

Timed, per request: from the moment the chat messages are handed over (the direct side's clock starts
before it applies the chat template and tokenizes, as the server's does when the request is sent) to
the first content token (TTFT); per batch: from the first request to the last token of all of them
(aggregate completion tokens / s). The table shows, over the rounds, the mean and median tokens / s of
each side, the mean and median of the per-round ratios server / direct (target >= 0.95) and the median
TTFT of each side and its difference.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _stream_client import ClientProcess  # noqa: E402 - the lean streaming client, in its own process


def small_model(path: Path) -> Path:
    """A random Qwen2 of 18.6M parameters (6 layers, hidden 512) with the tiny model's tokenizer.

    The tiny model costs ~0.2 ms a token, so the server's per-token HTTP work weighs as much as the model;
    this one costs what a small model on a CPU costs per token, so the ratio shows the overhead a user sees.
    """
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from kernel_magics.testing import make_tiny_model

    if (path / "config.json").is_file():
        return path
    tiny = make_tiny_model(path.parent / "tiny-for-small", "qwen2")
    config = AutoConfig.from_pretrained(tiny)
    config.update(
        {
            "hidden_size": 512,
            "intermediate_size": 1536,
            "num_hidden_layers": 6,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "layer_types": ["full_attention"] * 6,
        }
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(path)
    shutil.copy(tiny / "generation_config.json", path / "generation_config.json")
    return path


def prompts(n: int) -> list[list[dict[str, str]]]:
    from kernel_magics.testing import tiny_dataset

    rows = [json.loads(line) for line in tiny_dataset("sft").read_text(encoding="utf-8").splitlines()]
    users = [next(m for m in row["messages"] if m["role"] == "user") for row in rows]
    return [[{"role": "user", "content": u["content"]}] for u in users[:n]]


# -- the transformers engine, called directly -------------------------------------------------------
async def direct_hf(
    engine: Any, batch: list[list[dict[str, str]]], max_tokens: int, stream_interval_ms: float
) -> tuple[int, list[float], float]:
    from kernel_magics.serve.engines.base import RequestHandle, SamplingParams

    loop = asyncio.get_running_loop()

    async def one(i: int, messages: list[dict[str, str]]) -> tuple[int, float]:
        started = time.perf_counter()  # before templating and tokenizing, as the server's clock
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        handle = RequestHandle(
            f"direct-{i}",
            engine.models[0],
            engine.chat_prompt(messages),
            params,
            loop,
            stream=True,
            stream_interval_s=stream_interval_ms / 1000,  # delivered like the server's streams
        )
        engine.submit(handle)
        ttft = None
        tokens = 0
        async for delta in handle.deltas():
            if ttft is None:
                ttft = time.perf_counter() - started
            if delta.finish_reason is not None:
                tokens = delta.completion_tokens
        return tokens, ttft or 0.0

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i, m) for i, m in enumerate(batch)))
    wall = time.perf_counter() - started
    return sum(t for t, _ in results), [ttft for _, ttft in results], wall


# -- vLLM called directly (AsyncLLM, no HTTP) --------------------------------------------------------
class DirectVLLM:
    def __init__(self, model_dir: Path, on_cpu: bool) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs: dict[str, Any] = {"model": str(model_dir), "disable_log_stats": True}
        if on_cpu:
            kwargs.update(enforce_eager=True, kv_cache_memory_bytes=256 << 20)
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.counter = 0

    async def run(self, batch: list[list[dict[str, str]]], max_tokens: int) -> tuple[int, list[float], float]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=False)

        async def one(messages: list[dict[str, str]]) -> tuple[int, float]:
            self.counter += 1
            started = time.perf_counter()  # before templating (AsyncLLM tokenizes inside generate)
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ttft = None
            tokens = 0
            async for out in self.engine.generate(prompt, params, request_id=f"bench-{self.counter}"):
                if ttft is None and out.outputs and out.outputs[0].token_ids:
                    ttft = time.perf_counter() - started
                tokens = len(out.outputs[0].token_ids)
            return tokens, ttft or 0.0

        started = time.perf_counter()
        results = await asyncio.gather(*(one(m) for m in batch))
        wall = time.perf_counter() - started
        return sum(t for t, _ in results), [ttft for _, ttft in results], wall

    def shutdown(self) -> None:
        self.engine.shutdown()


def compare(name: str, direct: Any, server: Any, all_prompts: list, clients: list[int], rounds: int) -> list[dict]:
    """For each client count: round 0 warms both sides up, then each round runs both on the same batch,
    the side that goes first alternating (so both see the same machine load)."""
    rows = []
    for n in clients:
        batch = all_prompts[:n]
        samples: dict[str, list[tuple[float, float]]] = {"direct": [], "server": []}
        for r in range(rounds + 1):
            order = (("direct", direct), ("server", server)) if r % 2 else (("server", server), ("direct", direct))
            for side, run in order:
                tokens, ttfts, wall = run(batch)
                if r:
                    samples[side].append((tokens / wall, statistics.median(ttfts)))
        rows.append(row(name, n, samples["direct"], samples["server"]))
        print(_line(rows[-1]), flush=True)
    return rows


def row(name: str, clients: int, direct: list[tuple[float, float]], server: list[tuple[float, float]]) -> dict:
    """Mean and median over the rounds of each side's tokens/s and TTFT, and of the per-round ratios."""
    ratios = [s[0] / d[0] for d, s in zip(direct, server, strict=True)]
    figures = {"engine": name, "clients": clients}
    for side, samples in (("direct", direct), ("server", server)):
        figures[f"{side} tok/s"] = statistics.fmean(s[0] for s in samples)
        figures[f"{side} tok/s median"] = statistics.median(s[0] for s in samples)
        figures[f"{side} TTFT ms"] = statistics.median(s[1] for s in samples) * 1000
    figures["ratio"] = statistics.fmean(ratios)
    figures["ratio median"] = statistics.median(ratios)
    figures["TTFT overhead ms"] = figures["server TTFT ms"] - figures["direct TTFT ms"]
    return figures


def _line(row: dict) -> str:
    return (
        f"{row['engine']:<12} {row['clients']:>3} clients: tok/s mean / median: direct {row['direct tok/s']:.0f} / "
        f"{row['direct tok/s median']:.0f}, server {row['server tok/s']:.0f} / {row['server tok/s median']:.0f}; "
        f"ratio {row['ratio']:.3f} / {row['ratio median']:.3f}; TTFT median direct {row['direct TTFT ms']:.1f} ms, "
        f"server {row['server TTFT ms']:.1f} ms (overhead {row['TTFT overhead ms']:+.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, small (built here), a local folder or a hub id")
    parser.add_argument("--device", default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vllm", action="store_true", help="also compare vLLM's server with AsyncLLM")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers engine")
    parser.add_argument(
        "--stream-interval-ms", type=float, default=None, help="our server's stream interval [default: serve()'s]"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (busy shared machines: 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.max_tokens, args.rounds = "1,2", 4, 1
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    import kernel_magics as km
    from kernel_magics.device import select_device
    from kernel_magics.serve.api import serve

    clients = [int(c) for c in args.clients.split(",")]
    all_prompts = prompts(max(clients))
    if args.model == "small":
        from kernel_magics.config import settings

        args.model = str(small_model(settings.cache_path / "models" / "bench-small-qwen2"))
    model_dir = km.resolve_model(args.model)
    info = select_device(args.device)
    print(
        f"model {args.model} on {info.type} ({info.name}, torch threads {torch.get_num_threads()}); "
        f"{args.max_tokens} new tokens per request, greedy; load average {os.getloadavg()[0]:.1f}; "
        f"stream interval {args.stream_interval_ms if args.stream_interval_ms is not None else 'default'} ms"
    )
    rows: list[dict] = []
    client = ClientProcess()

    if not args.no_hf:
        from kernel_magics.serve.engines.hf import HFEngine

        interval = {} if args.stream_interval_ms is None else {"stream_interval_ms": args.stream_interval_ms}
        stream_interval_ms = interval.get(
            "stream_interval_ms", inspect.signature(serve).parameters["stream_interval_ms"].default
        )

        engine = HFEngine(model_dir, args.model, device=info)
        engine.start()
        srv = serve(args.model, backend="transformers", device=args.device, name="bench-hf", **interval)
        try:
            rows += compare(
                "transformers",
                lambda b: asyncio.run(direct_hf(engine, b, args.max_tokens, stream_interval_ms)),
                lambda b: client.run(srv.url, srv.model, b, args.max_tokens),
                all_prompts,
                clients,
                args.rounds,
            )
        finally:
            srv.stop()
            engine.shutdown()

    if args.vllm:
        from kernel_magics.serve.engines.vllm import vllm_available

        if not vllm_available():
            print("vllm is not installed: skipping the vLLM comparison")
        else:
            srv = serve(args.model, backend="vllm", device=args.device, name="bench-vllm")
            loop = asyncio.new_event_loop()
            direct = None
            try:
                direct = DirectVLLM(model_dir, on_cpu=info.type == "cpu")
                rows += compare(
                    "vllm",
                    lambda b: loop.run_until_complete(direct.run(b, args.max_tokens)),
                    lambda b: client.run(srv.url, srv.model, b, args.max_tokens),
                    all_prompts,
                    clients,
                    args.rounds,
                )
            finally:
                if direct is not None:
                    direct.shutdown()
                srv.stop()
                loop.close()

    client.close()
    print()
    print(
        "| engine | clients | direct tok/s mean / median | server tok/s mean / median | ratio mean / median "
        "| direct TTFT ms | server TTFT ms | overhead ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['clients']} | {r['direct tok/s']:.0f} / {r['direct tok/s median']:.0f} | "
            f"{r['server tok/s']:.0f} / {r['server tok/s median']:.0f} | {r['ratio']:.3f} / {r['ratio median']:.3f} | "
            f"{r['direct TTFT ms']:.1f} | {r['server TTFT ms']:.1f} | {r['TTFT overhead ms']:+.1f} |"
        )


if __name__ == "__main__":
    main()
