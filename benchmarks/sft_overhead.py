"""Does ``km.sft`` (with its live dashboard attached) train as fast as bare TRL ``SFTTrainer``?

    python benchmarks/sft_overhead.py [--steps 150] [--repeats 3]

Both sides train the same tiny model on the same data with the same seed, batch, LoRA and step count,
logging every step. The kernel_magics side goes through ``km.sft`` with a ``Dashboard`` subscribed to
the run; the bare side builds ``trl.SFTTrainer`` directly. Throughput is non-padding tokens per second
between consecutive step logs (the median over steps, which shrugs off bursts of load from other
processes), measured alternately in this process; the table shows medians and their ratio (target >= 0.98).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback  # noqa: E402 - after the environment is set

LORA = dict(r=8, alpha=16, dropout=0.05)
BATCH, LR, SEED, MAX_LENGTH = 8, 1e-3, 0, 512


SKIP = 5  # first steps (allocator warm-up) left out of the medians


class StepClock(TrainerCallback):
    """The same measurement km.sft's RunCallback makes: non-padding tokens / seconds between step logs."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self._last = (time.perf_counter(), 0)

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self._last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        if logs and "loss" in logs:
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            self.rates.append((tokens - self._last[1]) / (now - self._last[0]))
            self._last = (now, tokens)


def bare_trl(model_path: Path, data: str, steps: int, out: Path) -> float:
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    config = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        seed=SEED,
        data_seed=SEED,
        max_length=MAX_LENGTH,
        logging_steps=1,
        save_strategy="no",
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        assistant_only_loss=True,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )
    train = datasets.load_dataset("json", data_files=data, split="train")
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    clock = StepClock()
    trainer.add_callback(clock)
    trainer.train()
    return statistics.median(clock.rates[SKIP:] or clock.rates)


def kernel_magics_sft(model_path: Path, data: str, steps: int, out: Path) -> float:
    import kernel_magics as km
    from kernel_magics.widgets.dashboard import Dashboard

    run = km.sft(
        str(model_path),
        data,
        method="lora",
        lora_r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        lr=LR,
        seed=SEED,
        max_steps=steps,
        batch_size=BATCH,
        max_length=MAX_LENGTH,
        logging_steps=1,
        save_steps=10**6,
        output_dir=str(out),
        verbose=False,
    )
    dashboard = Dashboard(run)
    status = run.wait()
    if status != "finished":
        raise SystemExit(f"km.sft run {status}: {run.error}")
    assert len(dashboard.series("loss")[0]) == steps
    rates = run.metrics["tokens_per_s"].dropna()
    return float((rates.iloc[SKIP:] if len(rates) > SKIP else rates).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (1 is steadier on a busy machine)")
    options = parser.parse_args()
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)

    from kernel_magics.config import settings
    from kernel_magics.testing import make_tiny_model, tiny_dataset

    work = Path(tempfile.mkdtemp(prefix="km-bench-"))
    settings.cache_dir = str(work / "cache")
    settings.workspace = str(work / "ws")
    model = make_tiny_model(work / "tiny", "qwen2")
    data = str(tiny_dataset("sft"))

    kernel_magics_sft(model, data, 5, work / "warmup-km")  # imports and first-step costs off the clock
    bare_trl(model, data, 5, work / "warmup-trl")
    km_tps, trl_tps = [], []
    for i in range(options.repeats):
        t = time.perf_counter()
        if i % 2 == 0:  # alternate the order so drifting machine load hits both sides alike
            trl_tps.append(bare_trl(model, data, options.steps, work / f"trl-{i}"))
            km_tps.append(kernel_magics_sft(model, data, options.steps, work / f"km-{i}"))
        else:
            km_tps.append(kernel_magics_sft(model, data, options.steps, work / f"km-{i}"))
            trl_tps.append(bare_trl(model, data, options.steps, work / f"trl-{i}"))
        print(
            f"repeat {i + 1}: TRL {trl_tps[-1]:.0f} tok/s, km.sft {km_tps[-1]:.0f} tok/s ({time.perf_counter() - t:.0f} s)"
        )
    trl_med, km_med = statistics.median(trl_tps), statistics.median(km_tps)
    print()
    print(f"tiny Qwen2, LoRA r={LORA['r']}, batch {BATCH}, {options.steps} steps, logging every step, CPU")
    print(f"{'side':<34}{'tokens/s (median)':>20}")
    print(f"{'bare trl.SFTTrainer':<34}{trl_med:>20.0f}")
    print(f"{'km.sft + live dashboard':<34}{km_med:>20.0f}")
    print(f"{'ratio km / trl (target >= 0.98)':<34}{km_med / trl_med:>20.3f}")


if __name__ == "__main__":
    main()
