"""Training speed of ``km.grpo`` next to a bare TRL ``GRPOTrainer`` doing identical work.

    python benchmarks/grpo_overhead.py [--steps 20] [--rounds 4] [--threads 1] [--smoke]

Same tiny model, same prompt rows (the kit's conversations without their last reply), same seed, full
fine-tuning, batch, optimizer (adamw_torch), learning rate, generations and completion length, so both
sides generate the same completions and take the same steps (the reward curves are printed side by side).
``km.grpo`` runs as users run it: a background ``Run`` with its metric callback, samples table,
logging.jsonl and final model save. Both sides train in a worker thread with ``--threads`` torch threads.
Each round runs the two back to back, alternating which goes first; the headline is the mean and median of
the per-round ratios of steps per second from each trainer's own ``train_runtime`` (target: >= 0.97).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED = 7
WORK = dict(lr=1e-2, num_generations=4, max_completion_length=16, batch_size=8, beta=0.0)


def prompt_rows() -> list[dict]:
    """The kit's conversations as prompt-only rows."""
    from kernel_magics.testing import tiny_dataset

    rows = []
    for line in tiny_dataset("sft").read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        rows.append({"prompt": messages[:last]})
    return rows


def digits(completions, **kwargs):  # noqa: ANN001, ANN201 - TRL's reward signature
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def in_thread(function, *args):  # noqa: ANN001, ANN202
    """Run ``function`` in a worker thread, as km.grpo trains."""
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


def bare_trl(model_path: Path, rows: list[dict], steps: int, out: Path, seed: int = SEED) -> dict:
    """A plain GRPOTrainer with the TrainingArguments km.grpo derives for full fine-tuning on the CPU."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    model.config.use_cache = False
    config = GRPOConfig(
        output_dir=str(out),
        learning_rate=WORK["lr"],
        max_steps=steps,
        per_device_train_batch_size=WORK["batch_size"],
        num_generations=WORK["num_generations"],
        max_completion_length=WORK["max_completion_length"],
        beta=WORK["beta"],
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        save_strategy="no",
        warmup_steps=0.0,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    datasets.disable_progress_bars()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=digits,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    result = trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"runtime": result.metrics["train_runtime"], "rewards": rewards}


def km_grpo(model_path: Path, rows: list[dict], steps: int, out: Path, seed: int = SEED) -> dict:
    """The same work through km.grpo (a background Run with its callbacks, files and final save)."""
    from kernel_magics.train.api import grpo

    run = grpo(
        model=str(model_path),
        dataset=rows,
        reward=digits,
        method="full",
        max_steps=steps,
        seed=seed,
        warmup_ratio=0.0,
        lr_scheduler="linear",
        save_steps=10 * steps,
        gradient_checkpointing=False,
        optim="adamw_torch",
        output_dir=str(out),
        verbose=False,
        **WORK,
    )
    if run.wait() != "finished":
        raise SystemExit(f"km.grpo run {run.status}: {run.error}")
    return {"runtime": float(run.summary["train_runtime"]), "rewards": [float(v) for v in run.metrics["reward"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared machine)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI: 3 steps, 1 round")
    options = parser.parse_args()
    if options.smoke:
        options.steps, options.rounds = 3, 1
    import torch

    if options.threads > 0:
        torch.set_num_threads(options.threads)
    from kernel_magics.config import settings
    from kernel_magics.testing import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="km-grpo-bench-") as tmp:
        root = Path(tmp)
        settings.cache_dir, settings.workspace = str(root / "cache"), str(root / "workspace")
        model_path = make_tiny_model(root / "tiny-qwen2", "qwen2")
        rows = prompt_rows()
        if not options.smoke:  # imports and first-call costs, not timed
            in_thread(bare_trl, model_path, rows, 2, root / "warmup-bare")
            km_grpo(model_path, rows, 2, root / "warmup-km")
        results: dict[str, list[dict]] = {"bare": [], "km": []}
        for i in range(options.rounds):
            order = ("km", "bare") if i % 2 else ("bare", "km")
            for side in order:
                out = root / f"{side}-{i}"
                if side == "bare":
                    results[side].append(in_thread(bare_trl, model_path, rows, options.steps, out))
                else:
                    results[side].append(km_grpo(model_path, rows, options.steps, out))
    report(results, options.steps, torch.get_num_threads())


def report(results: dict[str, list[dict]], steps: int, threads: int) -> None:
    print(f"\nGRPO, tiny Qwen2, full, {WORK}, {steps} steps, CPU, {threads} torch thread(s), worker threads")
    for name, label in (("bare", "bare TRL GRPOTrainer"), ("km", "km.grpo")):
        times = [r["runtime"] for r in results[name]]
        print(f"{label:22} s/run: {', '.join(f'{t:.2f}' for t in times)}  (mean {statistics.mean(times):.2f})")
    first_bare, first_km = results["bare"][0]["rewards"], results["km"][0]["rewards"]
    gap = max((abs(a - b) for a, b in zip(first_bare, first_km, strict=False)), default=0.0)
    print(f"reward curve bare: {', '.join(f'{r:.3f}' for r in first_bare)}")
    print(f"reward curve km:   {', '.join(f'{r:.3f}' for r in first_km)}  (largest gap {gap:.2e})")
    ratios = [b["runtime"] / k["runtime"] for b, k in zip(results["bare"], results["km"], strict=True)]
    mean, median = statistics.mean(ratios), statistics.median(ratios)
    verdict = "meets" if median >= 0.97 else "misses"
    print(f"per-round speed ratios km.grpo / bare TRL: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"speed ratio km.grpo / bare TRL: mean {mean:.3f}, median {median:.3f} ({verdict} the 0.97 target)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
