"""Packing vs padded batches on mixed-length data: non-padding tokens per second through ``km.sft``.

    python benchmarks/packing.py [--steps 40] [--repeats 3]

The data are conversations of very different lengths (1 to 12 chat turns joined from the packaged tiny
dataset, ~40 to ~400 tokens). Padded batches pad every row to the longest in its batch; packing fills rows
with whole conversations (TRL's best-fit-decreasing packing) that never attend to each other
(``position_ids`` restart per conversation). On CPU SDPA, which has no variable-length kernel, the rows
stay rows and are as long as the longest conversation (``kernel_magics.train.packing``); with
FlashAttention TRL's flat padding-free batch is used. Both sides train the same tiny model with the same
seed, alternately in this process; the table shows medians and the ratio (target >= 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
from pathlib import Path

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


def throughput(model: Path, rows: list[dict], packing: bool, steps: int, out: Path) -> tuple[float, int]:
    import kernel_magics as km

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
    tokens = int(run.metrics["tokens"].max())
    return tokens / run.summary["train_runtime"], tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (1 is steadier on a busy machine)")
    options = parser.parse_args()
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
    rows = mixed_length_rows()
    tokenizer = AutoTokenizer.from_pretrained(model)
    lengths = sorted(len(tokenizer.apply_chat_template(r["messages"], tokenize=True)["input_ids"]) for r in rows)
    print(f"{len(rows)} rows, tokens per row: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}")

    throughput(model, rows, False, 3, work / "warmup")
    padded, packed = [], []
    for i in range(options.repeats):
        padded.append(throughput(model, rows, False, options.steps, work / f"padded-{i}")[0])
        packed.append(throughput(model, rows, True, options.steps, work / f"packed-{i}")[0])
        print(f"repeat {i + 1}: padded {padded[-1]:.0f} tok/s, packed {packed[-1]:.0f} tok/s")
    pad_med, pack_med = statistics.median(padded), statistics.median(packed)
    print()
    print(f"tiny Qwen2, LoRA r=8, batch {BATCH}, max_length {MAX_LENGTH}, {options.steps} steps, CPU")
    print(f"{'batches':<30}{'non-padding tokens/s (median)':>32}")
    print(f"{'padded to the longest row':<30}{pad_med:>32.0f}")
    print(f"{'packed rows':<30}{pack_med:>32.0f}")
    print(f"{'ratio packed / padded':<30}{pack_med / pad_med:>32.2f}  (target >= 1.5)")


if __name__ == "__main__":
    main()
