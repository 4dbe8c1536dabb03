"""Does a run in its own (warm) worker process start and step as fast as one in the kernel's thread?

    python benchmarks/worker_start.py [--model tiny|smollm2|FOLDER] [--steps 12] [--rounds 3] [--smoke]

Two sides, the same ``km.sft`` call in this process (the kernel) on the same rows, seed and plan:

* ``kernel``: ``where="kernel"``, the run trains in a thread of this process, imports warm (one untimed run
  of each side first, as in a notebook that has trained before);
* ``worker``: the default, the run trains in the warm worker process that waits for it (started behind the
  previous run; the benchmark waits until that worker has finished importing before the timed call, as a
  user who reads the last result before starting the next run does).

What is timed, per side and round:

* **first step**: from the ``km.sft`` call to the wall time of the first logged step (``logging.jsonl``'s
  ``time``, logged every step);
* **s/step**: the median time between consecutive step logs, leaving out the first two.

Sides alternate within each round (``_rounds.py``). Targets (#27): first step within 1.5x of the kernel's,
s/step within noise (<= 1.02x). ``--smoke``: tiny model, 4 steps, one round. Timings on a shared machine are
noisy: repeat.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _rounds import print_ratio, print_sides, run_rounds


def one_run(model: str, dataset: str, steps: int, where: str) -> dict[str, float]:
    import kernel_magics as km

    if where == "worker":
        from kernel_magics.train.runtime import warm

        warm.wait_for_spare()
    start = time.time()
    run = km.sft(model, dataset, max_steps=steps, logging_steps=1, seed=42, where=where, verbose=False)
    state = run.wait(1800)
    if state != "finished":
        raise SystemExit(f"{where} run {state}: {run.error}")
    times = sorted(row["time"] for row in run.rows if row.get("loss") is not None)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][2:] or [times[-1] - times[0]]
    return {"first_step_s": times[0] - start, "s_per_step": statistics.median(gaps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    options = parser.parse_args()
    if options.smoke:
        options.model, options.steps, options.rounds = "tiny", 4, 1

    import tempfile

    import kernel_magics as km
    from kernel_magics.config import settings
    from kernel_magics.testing import tiny_dataset
    from kernel_magics.train.runtime import warm

    settings.workspace = tempfile.mkdtemp(prefix="km-bench-worker-")
    model = str(km.resolve_model(options.model))
    dataset = str(tiny_dataset("sft"))
    warm.prestart()
    for where in ("kernel", "worker"):  # warm both sides: imports in this process, a worker behind the run
        one_run(model, dataset, 3, where)
    sides = {where: (lambda i, w=where: one_run(model, dataset, options.steps, w)) for where in ("kernel", "worker")}
    results = run_rounds(sides, options.rounds)
    print(f"\nmodel {Path(model).name}, {options.steps} steps, {options.rounds} round(s)")
    print_sides(results, {"first_step_s": "first step (s)", "s_per_step": "s/step"})
    print_ratio(
        "first step, worker / kernel",
        [r["first_step_s"] for r in results["worker"]],
        [r["first_step_s"] for r in results["kernel"]],
        "target <= 1.5",
    )
    print_ratio(
        "s/step, worker / kernel",
        [r["s_per_step"] for r in results["worker"]],
        [r["s_per_step"] for r in results["kernel"]],
        "target <= 1.02",
    )


if __name__ == "__main__":
    main()
