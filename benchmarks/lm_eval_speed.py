"""Questions per second of an lm-eval multiple-choice task, in process (lm-eval's HFLM on the loaded model)
vs through the OpenAI-compatible server (lm-eval's local-completions, echo + logprobs on token ids).

    python benchmarks/lm_eval_speed.py               # SmolLM2-135M-Instruct, km_general_en (60 questions), 3 rounds
    python benchmarks/lm_eval_speed.py --smoke       # the tiny model, 8 questions, 1 round

Timed: one whole ``km.evaluate(..., tasks=[TASK])`` call per side and round (task loading, the model load of
the in-process side, and every log-likelihood request; the server is started once, before the rounds, and
is not timed). Both sides run once untimed first (warm-up), then the order alternates each round. The
accuracy of both sides is printed too: they score the same requests, so it should be the same.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from _rounds import print_ratio, print_sides, run_rounds  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="km_general_en")
    parser.add_argument("--limit", type=int, default=None, help="questions per run [default: all]")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 8 questions, 1 round")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.limit, args.rounds = "tiny", 8, 1

    import kernel_magics as km
    from kernel_magics.bench.api import benchmark

    server = km.serve(args.model, backend="transformers", name="lm-eval-speed", stream_interval_ms=0)
    served_name = server.models[0]
    accuracy: dict[str, float] = {}

    def side(target: str, **options: object):
        def run(_round: int) -> dict[str, float]:
            started = time.perf_counter()
            result = benchmark(target, [args.task], limit=args.limit, batch_size=args.batch_size, save=False, **options)
            seconds = time.perf_counter() - started
            accuracy[target] = result.score(args.task)
            questions = result.scores[0].samples
            return {"questions_per_s": questions / seconds, "seconds": seconds}

        return run

    try:
        sides = {"in-process": side(args.model), "server": side(server.base_url, served_model=served_name)}
        for run in sides.values():
            run(-1)  # warm-up
        results = run_rounds(sides, args.rounds)
    finally:
        server.stop()
    print(f"\n{args.model}, {args.task}, limit {args.limit or 'all'}, batch {args.batch_size}, {args.rounds} rounds")
    print_sides(results, {"questions_per_s": "questions/s", "seconds": "s per run"})
    print_ratio(
        "server / in-process questions/s",
        [r["questions_per_s"] for r in results["server"]],
        [r["questions_per_s"] for r in results["in-process"]],
    )
    print("accuracy: " + ", ".join(f"{name} {value:.4f}" for name, value in accuracy.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
