"""Packing vs padded batches on mixed-length data: non-padding tokens per second through ``km.sft``.

    python benchmarks/packing.py [--steps 40] [--rounds 4] [--threads N] [--smoke]

The data are conversations of very different lengths (1 to 12 chat turns joined from the packaged tiny
dataset, ~40 to ~400 tokens). Padded batches pad every row to the longest in its batch; packing fills rows
with whole conversations (TRL's best-fit-decreasing packing) that never attend to each other
(``position_ids`` restart per conversation). On CPU SDPA, which has no variable-length kernel, the rows
stay rows and are as long as the longest conversation (``kernel_magics.train.methods.packing``); with
FlashAttention TRL's flat padding-free batch is used.

Both sides are the same ``km.sft`` call (same tiny model, rows, seed, LoRA, batch, optimizer, torch threads,
training in the run's worker thread) but for ``packing``. Each side first runs once untimed (warm-up);
then every round runs both, the side that goes first alternating. Timed, per run: (1) the training loop,
i.e. the run's ``train_runtime`` (``Trainer.train``: every step with its logging, without loading, data
preparation or the final save), giving non-padding tokens / s; (2) end to end, from the ``km.sft`` call
to ``run.wait()`` returning (data checks, model load, trainer build, training, adapter save). The table
shows the mean and median of each side and of the per-round ratios (target: packed / padded >= 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from _rounds import print_ratio, print_sides, run_rounds

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BATCH, MAX_LENGTH = 8, 1024


def mixed_length_rows(n: int = 400, seed: int = 0) -> list[dict]:
    """Conversations of 1..12 exchanges built from the packaged SFT rows (a long-tailed length mix)."""
    from kernel_magics.testing import tiny_dataset

    base = [json.loads(line)["messages"] for line in tiny_dataset("sft").read_text().splitlines()]
    pairs = [m[-2:] for m in base if len(m) >= 2 and m[-2]["role"] == "user"]
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        turns = rng.choice([1, 1, 1, 2, 2, 3, 4, 6, 9, 12])
        messages = [message for pair in rng.sample(pairs, turns) for message in pair]
        rows.append({"messages": messages})
    return rows


def throughput(model: Path, rows: list[dict], packing: bool, steps: int, out: Path) -> dict[str, float]:
    """One km.sft run: its non-padding tokens / s over ``train_runtime`` and its end-to-end seconds."""
    import kernel_magics as km

    start = time.perf_counter()
    run = km.sft(
        str(model),
        rows,
        method="lora",
        lora_r=8,
        lora_alpha=16,
        lr=1e-3,
        seed=0,
        max_steps=steps,
        batch_size=BATCH,
        max_length=MAX_LENGTH,
        packing=packing,
        logging_steps=5,
        save_steps=10**6,
        output_dir=str(out),
        verbose=False,
    )
    if run.wait() != "finished":
        raise SystemExit(f"run failed: {run.error}")
    end_to_end = time.perf_counter() - start
    tokens = int(run.metrics["tokens"].max())
    return {"tokens_per_s": tokens / run.summary["train_runtime"], "end_to_end_s": end_to_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (1 is steadier on a busy machine)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (< 60 s)")
    options = parser.parse_args()
    n_rows = 400
    if options.smoke:
        options.steps, options.rounds, n_rows = 2, 1, 32
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)

    from transformers import AutoTokenizer

    from kernel_magics.config import settings
    from kernel_magics.testing import make_tiny_model

    work = Path(tempfile.mkdtemp(prefix="km-bench-packing-"))
    settings.cache_dir = str(work / "cache")
    settings.workspace = str(work / "ws")
    model = make_tiny_model(work / "tiny", "qwen2")
    rows = mixed_length_rows(n_rows)
    tokenizer = AutoTokenizer.from_pretrained(model)
    lengths = sorted(len(tokenizer.apply_chat_template(r["messages"], tokenize=True)["input_ids"]) for r in rows)
    print(f"{len(rows)} rows, tokens per row: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}")

    warmup_steps = 1 if options.smoke else 3
    throughput(model, rows, False, warmup_steps, work / "warmup-padded")  # untimed: first-call costs, both sides
    throughput(model, rows, True, warmup_steps, work / "warmup-packed")
    sides = {
        "padded": lambda i: throughput(model, rows, False, options.steps, work / f"padded-{i}"),
        "packed": lambda i: throughput(model, rows, True, options.steps, work / f"packed-{i}"),
    }
    results = run_rounds(sides, options.rounds)
    print()
    print(
        f"tiny Qwen2, LoRA r=8, batch {BATCH}, max_length {MAX_LENGTH}, {options.steps} steps, {options.rounds} rounds, CPU"
    )
    print_sides(results, {"tokens_per_s": "non-padding tok/s", "end_to_end_s": "end-to-end s"})
    tps = {name: [r["tokens_per_s"] for r in runs] for name, runs in results.items()}
    e2e = {name: [r["end_to_end_s"] for r in runs] for name, runs in results.items()}
    print_ratio("tokens/s packed / padded", tps["packed"], tps["padded"], "(target >= 1.5)")
    print_ratio("end-to-end time padded / packed", e2e["padded"], e2e["packed"])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
