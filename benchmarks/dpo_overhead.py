"""``km.dpo`` next to a bare TRL ``DPOTrainer`` doing identical work, timed as users run them.

    python benchmarks/dpo_overhead.py [--steps 80] [--rounds 6] [--threads 1] [--optim adamw_torch] [--smoke]

Same tiny model, same rows (the kit's preference pairs, as user / assistant messages on both sides), same
seed, LoRA, batch, optimizer (``--optim``, default km.dpo's CPU plan ``adamw_torch``, passed to both),
learning rate, number of steps and ``--threads`` torch threads; both sides train in a worker thread
(km.dpo's Run does). Each side runs once untimed first (imports, first-call costs); then every round runs
both, the side that goes first alternating.

Timed, per run: (1) end to end, what a user waits for: for km.dpo from the ``km.dpo(...)`` call to
``run.wait()`` returning (reading and checking the rows, loading the model, building the trainer, training
with its metric callback and logging.jsonl, saving the adapter); for bare TRL from reading the jsonl file
to ``trainer.save_model`` returning (reading the rows, loading, building the trainer, training, saving the
adapter); (2) the training loop alone, the trainer's ``train_runtime``, as non-padding tokens / s. The
table shows the mean and median of each side and of the per-round ratios (target: km.dpo / bare >= 0.98).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from _rounds import print_ratio, print_sides, run_rounds

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

LORA = {"r": 8, "alpha": 16, "dropout": 0.0}
LR = 5e-4
BATCH = 4
SEED = 42
MAX_LENGTH = 512


def read_pairs(path: Path) -> list[dict]:
    """What a bare-TRL user writes: the jsonl pairs as user / assistant messages (km.dpo formats string
    rows the same way, so both sides train on the same chat-template tokens)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        rows.append(
            {
                "prompt": [{"role": "user", "content": pair["prompt"]}],
                "chosen": [{"role": "assistant", "content": pair["chosen"]}],
                "rejected": [{"role": "assistant", "content": pair["rejected"]}],
            }
        )
    return rows


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


def bare_trl(model_path: Path, data: Path, steps: int, out: Path, optim: str) -> dict[str, float]:
    """A plain DPOTrainer given the base model and a LoRA config (reference: the adapter disabled)."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback
    from trl import DPOConfig, DPOTrainer

    start = time.perf_counter()
    rows = read_pairs(data)
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
    trainer.save_model(str(out / "adapter"))
    end_to_end = time.perf_counter() - start
    tokens = trainer.state.num_input_tokens_seen
    return {"end_to_end_s": end_to_end, "tokens_per_s": tokens / result.metrics["train_runtime"]}


def km_dpo(model_path: Path, data: Path, steps: int, out: Path, optim: str) -> dict[str, float]:
    """The same work through km.dpo (a background Run with its callback, log file and adapter save)."""
    from kernel_magics.train.api import dpo

    start = time.perf_counter()
    run = dpo(
        model=str(model_path),
        dataset=str(data),
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
    end_to_end = time.perf_counter() - start
    if status != "finished":
        raise SystemExit(f"km.dpo run {status}: {run.error}")
    tokens = int(run.metrics["tokens"].dropna().max())
    return {"end_to_end_s": end_to_end, "tokens_per_s": tokens / float(run.summary["train_runtime"])}


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
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (< 60 s)")
    options = parser.parse_args()
    if options.smoke:
        options.steps, options.rounds = 2, 1
    import torch

    if options.threads > 0:
        torch.set_num_threads(options.threads)

    from kernel_magics.config import settings
    from kernel_magics.testing import make_tiny_model, tiny_dataset

    with tempfile.TemporaryDirectory(prefix="km-dpo-bench-") as tmp:
        root = Path(tmp)
        settings.cache_dir = str(root / "cache")
        settings.workspace = str(root / "workspace")
        model_path = make_tiny_model(root / "tiny-qwen2", "qwen2")
        data = tiny_dataset("dpo")
        if options.smoke:
            data = root / "pairs.jsonl"
            data.write_text("".join(tiny_dataset("dpo").read_text(encoding="utf-8").splitlines(True)[:16]))
        warmup = 1 if options.smoke else 3  # imports and first-call costs, untimed, both sides
        in_thread(bare_trl, model_path, data, warmup, root / "warmup-bare", options.optim)
        km_dpo(model_path, data, warmup, root / "warmup-km", options.optim)
        sides = {
            "bare TRL DPOTrainer": lambda i: in_thread(
                bare_trl, model_path, data, options.steps, root / f"bare-{i}", options.optim
            ),
            "km.dpo": lambda i: km_dpo(model_path, data, options.steps, root / f"km-{i}", options.optim),
        }
        results = run_rounds(sides, options.rounds, pause_s=0.5)

    threads = torch.get_num_threads()
    print(
        f"\nDPO, tiny Qwen2, LoRA r={LORA['r']}, batch {BATCH}, {options.steps} steps, {options.rounds} rounds "
        f"(CPU, {threads} torch thread{'s' if threads > 1 else ''}, {options.optim}, both sides in a worker thread)"
    )
    print_sides(results, {"end_to_end_s": "end-to-end s", "tokens_per_s": "train-loop tok/s"})
    bare, ours = results["bare TRL DPOTrainer"], results["km.dpo"]
    print_ratio(
        "end to end, bare time / km.dpo time",
        [r["end_to_end_s"] for r in bare],
        [r["end_to_end_s"] for r in ours],
        "(target >= 0.98)",
    )
    print_ratio(
        "training loop, km.dpo tok/s / bare tok/s",
        [r["tokens_per_s"] for r in ours],
        [r["tokens_per_s"] for r in bare],
        "(target >= 0.98)",
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
