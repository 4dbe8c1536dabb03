"""Training throughput of ``km.dpo`` next to a bare TRL ``DPOTrainer`` doing identical work.

    python benchmarks/dpo_overhead.py [--steps 80] [--rounds 6] [--threads 1] [--optim adamw_torch]

Same tiny model, same rows (the kit's preference data in the chat format both sides train on), same
seed, LoRA, batch, optimizer, learning rate and number of steps. ``km.dpo`` runs as users run it: a
background ``Run`` with its metric callback, logging.jsonl and final adapter save. tokens/s is the
non-padding tokens the trainer saw divided by its ``train_runtime``. Both sides train in a worker
thread (km.dpo's Run does, and torch threading differs on the main thread) with ``--threads`` torch
threads (default 1: stable numbers on a shared machine). Each round runs the two back to back (which
goes first alternates), so both see about the same load from the rest of the machine; the headline is
the median of the per-round ratios (target: >= 0.98), next to the ratio of each side's best round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

LORA = {"r": 8, "alpha": 16, "dropout": 0.0}
LR = 5e-4
BATCH = 4
SEED = 42
MAX_LENGTH = 512


def training_rows(model_path: Path) -> list[dict]:
    """The kit's pairs as km.dpo trains them (string rows formatted as chat messages)."""
    from kernel_magics.data.preference import prepare_preference, to_conversational
    from kernel_magics.testing import tiny_dataset

    data = prepare_preference(tiny_dataset("dpo"))
    to_conversational(data)
    return data.rows


def in_thread(function, *args):  # noqa: ANN001, ANN202
    """Run ``function`` in a worker thread, as km.dpo trains (torch threading differs from the main thread)."""
    result: dict = {}

    def work() -> None:
        try:
            result.update(function(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            result["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result


def bare_trl(model_path: Path, rows: list[dict], steps: int, out: Path, optim: str) -> dict[str, float]:
    """A plain DPOTrainer given the base model and a LoRA config (reference: the adapter disabled)."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    model.config.use_cache = False
    lora = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    config = DPOConfig(
        output_dir=str(out),
        learning_rate=LR,
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        max_length=MAX_LENGTH,
        seed=SEED,
        data_seed=SEED,
        logging_steps=5,
        logging_first_step=True,
        save_strategy="no",
        warmup_steps=0.03,
        lr_scheduler_type="cosine",
        optim=optim,
        gradient_checkpointing=False,
        beta=0.1,
        loss_type=["sigmoid"],
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )
    datasets.disable_progress_bars()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    result = trainer.train()
    tokens = trainer.state.num_input_tokens_seen
    runtime = result.metrics["train_runtime"]
    return {"tokens": tokens, "runtime": runtime, "tokens_per_s": tokens / runtime}


def km_dpo(model_path: Path, steps: int, out: Path, optim: str) -> dict[str, float]:
    """The same work through km.dpo (a background Run with its callback, log file and adapter save)."""
    from kernel_magics.testing import tiny_dataset
    from kernel_magics.train.api import dpo

    run = dpo(
        model=str(model_path),
        dataset=str(tiny_dataset("dpo")),
        loss="dpo",
        method="lora",
        lora_r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        lr=LR,
        max_steps=steps,
        batch_size=BATCH,
        max_length=MAX_LENGTH,
        seed=SEED,
        logging_steps=5,
        save_steps=10 * steps,
        beta=0.1,
        gradient_checkpointing=False,
        optim=optim,
        output_dir=str(out),
        verbose=False,
    )
    status = run.wait()
    if status != "finished":
        raise SystemExit(f"km.dpo run {status}: {run.error}")
    tokens = int(run.metrics["tokens"].dropna().max())
    runtime = float(run.summary["train_runtime"])
    return {"tokens": tokens, "runtime": runtime, "tokens_per_s": tokens / runtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: stable numbers on a shared machine)"
    )
    parser.add_argument(
        "--optim", default="adamw_torch", help="optimizer of both sides (km.dpo's CPU plan: adamw_torch)"
    )
    options = parser.parse_args()
    import torch

    if options.threads > 0:
        torch.set_num_threads(options.threads)

    from kernel_magics.config import settings
    from kernel_magics.testing import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="km-dpo-bench-") as tmp:
        root = Path(tmp)
        settings.cache_dir = str(root / "cache")
        settings.workspace = str(root / "workspace")
        model_path = make_tiny_model(root / "tiny-qwen2", "qwen2")
        rows = training_rows(model_path)
        # imports and first-call costs, not timed
        in_thread(bare_trl, model_path, rows, 3, root / "warmup-bare", options.optim)
        km_dpo(model_path, 3, root / "warmup-km", options.optim)
        results: dict[str, list[dict[str, float]]] = {"bare TRL DPOTrainer": [], "km.dpo": []}
        for i in range(options.rounds):
            bare = lambda i=i: in_thread(bare_trl, model_path, rows, options.steps, root / f"bare-{i}", options.optim)  # noqa: E731
            ours = lambda i=i: km_dpo(model_path, options.steps, root / f"km-{i}", options.optim)  # noqa: E731
            if i % 2:
                results["km.dpo"].append(ours())
                results["bare TRL DPOTrainer"].append(bare())
            else:
                results["bare TRL DPOTrainer"].append(bare())
                results["km.dpo"].append(ours())
            time.sleep(0.5)

    threads = torch.get_num_threads()
    print(
        f"\nDPO, tiny Qwen2, LoRA r={LORA['r']}, batch {BATCH}, {options.steps} steps, {options.rounds} rounds "
        f"(CPU, {threads} torch thread{'s' if threads > 1 else ''}, {options.optim}, both sides in a worker thread)"
    )
    print(f"{'':24} {'tokens':>8} {'best s':>8} {'best tok/s':>11} {'all tok/s':>28}")
    best = {}
    for name, runs in results.items():
        top = max(runs, key=lambda r: r["tokens_per_s"])
        best[name] = top["tokens_per_s"]
        every = ", ".join(f"{r['tokens_per_s']:.0f}" for r in runs)
        print(f"{name:24} {top['tokens']:>8} {top['runtime']:>8.2f} {top['tokens_per_s']:>11.1f} {every:>28}")
    paired = [k["tokens_per_s"] / b["tokens_per_s"] for b, k in zip(*results.values(), strict=True)]
    ratio = statistics.median(paired)
    verdict = "meets" if ratio >= 0.98 else "misses"
    print(f"per-round ratios km.dpo / bare TRL: {', '.join(f'{r:.3f}' for r in paired)}")
    print(f"best-of-{options.rounds} ratio: {best['km.dpo'] / best['bare TRL DPOTrainer']:.3f}")
    print(f"ratio km.dpo / bare TRL (median of rounds): {ratio:.3f} ({verdict} the 0.98 target)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
