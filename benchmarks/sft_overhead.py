"""Does ``km.sft`` (with its live dashboard attached) train as fast as bare TRL ``SFTTrainer`` on identical work?

    python benchmarks/sft_overhead.py [--model tiny|smollm2|FOLDER] [--steps 60] [--rounds 3] [--dtype fp32|bf16]
        [--plain] [--smoke]

Identical work on both sides: the same model folder, rows (the packaged ``sft.jsonl``, turned into
prompt/completion rows with loss on the last reply when the chat template has no generation markers, as
``km.sft`` does), LoRA (r 8, alpha 16, dropout 0.05 on q_proj/v_proj), fp32, batch 4, ``max_length`` 256,
seed 42, optimizer ``adamw_torch`` (transformers would give bare TRL ``adamw_torch_fused``), cosine schedule,
no gradient checkpointing, logging every step, training in a worker thread on both sides (``km.sft``
trains in one; ``--bare-thread main`` runs bare TRL on the main thread instead, to measure the layout itself).

What is timed, per side and round:

* **end to end**, as a user runs it: from the call (``km.sft(...)``; bare: loading the tokenizer, model,
  LoRA and building the trainer) to the adapter and tokenizer saved (``run.wait()`` returning; bare:
  ``save_model`` + ``save_pretrained`` done). Imports are warm (one short untimed run of each side first);
* **per step**: seconds between consecutive step logs (``on_log`` on both sides), leaving out the first
  ``--skip`` steps; reported as mean AND median (the median alone hides slow steps, e.g. a dashboard
  redraw), with tokens/s = non-padding tokens / summed step time.

Sides alternate within each round (TRL first in odd rounds, km.sft first in even ones). Each round also
prints the largest per-step loss difference between the sides (same seed: it should stay below 1e-3).
``--dtype bf16``: base weights in bf16 on every side (LoRA weights stay fp32, as km.sft does on the CPU).
``--plain``: a third side, a plain PyTorch loop over the very batches TRL's trainer collates (same rows,
labels, dropout, optimizer and schedule from the trainer, gradient clipping at 1.0), loss from the model's own
``labels`` path: what the step costs without any trainer around it.
``--smoke``: tiny model, 6 steps, one round, all three sides (< 60 s). Timings on a shared machine are noisy: repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback  # noqa: E402 - after the environment is set

LORA = dict(r=8, alpha=16, dropout=0.05, targets=["q_proj", "v_proj"])
BATCH, LR, SEED, MAX_LENGTH, OPTIM = 4, 2e-4, 42, 256, "adamw_torch"
DTYPE = {"name": "fp32"}  # --dtype: the base weights' dtype on every side


@dataclass
class Measured:
    """One side's run: end-to-end seconds, per-step seconds (after the skipped ones), tokens, losses."""

    total_s: float
    step_s: list[float]
    tokens: int
    losses: dict[int, float] = field(default_factory=dict)


def fp32_folder(folder: Path) -> Path:
    """``folder`` itself when its weights are stored in fp32, else an fp32 copy (built once): every side loads
    the same fp32 weights (LLaMA-Factory loads the stored dtype whatever its config says)."""
    config = json.loads((folder / "config.json").read_text())
    if str(config.get("torch_dtype") or config.get("dtype") or "float32") == "float32":
        return folder
    copy = Path(tempfile.gettempdir()) / f"km-bench-fp32-{folder.name}"
    if (copy / "config.json").is_file():
        return copy
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = copy.with_name(copy.name + f".tmp{os.getpid()}")
    AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(folder).save_pretrained(tmp)
    os.replace(tmp, copy)
    return copy


def model_folder(name: str, work: Path) -> Path:
    """An fp32 model folder for any name ``resolve_model`` accepts (``tiny``, ``smollm2``, a folder, a hub id)."""
    from kernel_magics.hub import resolve_model

    return fp32_folder(resolve_model(name, allow_download=False))


class StepClock(TrainerCallback):
    """Time at each step log, non-padding tokens seen and the loss: what km.sft's RunCallback records."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, float, int, float]] = []  # step, time, tokens seen, loss

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.marks.append((state.global_step, time.perf_counter(), state.num_input_tokens_seen, float("nan")))

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        if logs and "loss" in logs:
            self.marks.append((state.global_step, time.perf_counter(), state.num_input_tokens_seen, logs["loss"]))


def per_step(marks: list[tuple[int, float, int, float]], skip: int) -> tuple[list[float], int]:
    """Seconds of each logged step after the first ``skip`` and the tokens those steps trained on."""
    kept = marks[skip:]
    return [b[1] - a[1] for a, b in zip(kept, kept[1:], strict=False)], kept[-1][2] - kept[0][2]


def training_rows(model: Path) -> tuple[list[dict], bool]:
    """The rows km.sft trains on (and whether they stay conversations with assistant-only loss)."""
    from transformers import AutoTokenizer

    from kernel_magics.testing import tiny_dataset
    from kernel_magics.train.methods.sft import has_generation_markers, to_last_turn_completion

    rows = [json.loads(line) for line in tiny_dataset("sft").read_text().splitlines() if line.strip()]
    if has_generation_markers(AutoTokenizer.from_pretrained(model)):
        return rows, True
    return to_last_turn_completion(rows), False


def in_thread(work, main_thread: bool):  # noqa: ANN001, ANN201
    if main_thread:
        return work()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def base_dtype():  # noqa: ANN201 - torch.dtype
    import torch

    return torch.bfloat16 if DTYPE["name"] == "bf16" else torch.float32


def bare_trl(
    model_path: Path, steps: int, out: Path, skip: int, main_thread: bool = False, plain: bool = False
) -> Measured:
    import datasets
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    rows, conversations = training_rows(model_path)
    start = time.perf_counter()

    def train() -> StepClock:
        set_seed(SEED)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=base_dtype())
        lora = LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules=LORA["targets"],
            task_type="CAUSAL_LM",
        )
        config = SFTConfig(
            output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR, seed=SEED,
            data_seed=SEED, max_length=MAX_LENGTH, optim=OPTIM, logging_steps=1, logging_first_step=True,
            save_strategy="no", lr_scheduler_type="cosine", warmup_steps=0.03, assistant_only_loss=conversations,
            completion_only_loss=True, use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
            disable_tqdm=True, dataloader_num_workers=0, include_num_input_tokens_seen="non_padding",
        )  # fmt: skip
        train_rows = datasets.Dataset.from_list(rows)
        trainer = SFTTrainer(
            model=get_peft_model(model, lora), args=config, train_dataset=train_rows, processing_class=tokenizer
        )
        trainer.remove_callback(PrinterCallback)
        clock = StepClock()
        if plain:
            plain_loop(trainer, steps, clock)
            return clock
        trainer.add_callback(clock)
        trainer.train()
        trainer.save_model(str(out / "adapter"))
        tokenizer.save_pretrained(str(out / "adapter"))
        return clock

    clock = in_thread(train, main_thread)
    total = time.perf_counter() - start
    step_s, tokens = per_step(clock.marks, skip)
    return Measured(total, step_s, tokens, {m[0]: m[3] for m in clock.marks[1:]})


def plain_loop(trainer, steps: int, clock: StepClock) -> None:  # noqa: ANN001 - trl.SFTTrainer
    """``steps`` optimizer steps by hand over the trainer's own batches, optimizer and schedule."""
    import torch

    model = trainer.model
    model.train()
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    optimizer, schedule = trainer.optimizer, trainer.lr_scheduler
    batches = iter(trainer.get_train_dataloader())
    seen = 0
    clock.marks.append((0, time.perf_counter(), 0, float("nan")))
    for step in range(1, steps + 1):
        batch = next(batches)
        loss = model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        seen += int(batch["attention_mask"].sum())
        clock.marks.append((step, time.perf_counter(), seen, float(loss.detach())))


def kernel_magics_sft(model_path: Path, steps: int, out: Path, skip: int) -> Measured:
    import kernel_magics as km
    from kernel_magics.widgets.dashboard import Dashboard

    start = time.perf_counter()
    run = km.sft(
        str(model_path), str(_dataset()), method="lora", lora_r=LORA["r"], lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"], target_modules=LORA["targets"], lr=LR, seed=SEED, max_steps=steps,
        batch_size=BATCH, max_length=MAX_LENGTH, optim=OPTIM, logging_steps=1, save_steps=10**6,
        output_dir=str(out), device="cpu", dtype=DTYPE["name"], verbose=False,
    )  # fmt: skip
    dashboard = Dashboard(run)  # what a notebook user sees, redraw timer included
    status = run.wait()
    total = time.perf_counter() - start
    if status != "finished":
        raise SystemExit(f"km.sft run {status}: {run.error}")
    assert len(dashboard.series("loss")[0]) == steps
    rows = [r for r in run.rows if "loss" in r]
    marks = [(0, 0.0, 0, float("nan"))] + [(r["step"], r["elapsed_s"], r["tokens"], r["loss"]) for r in rows]
    step_s, tokens = per_step(marks, skip)
    return Measured(total, step_s, tokens, {m[0]: m[3] for m in marks[1:]})


def _dataset() -> Path:
    from kernel_magics.testing import tiny_dataset

    return tiny_dataset("sft")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def summary(label: str, runs: list[Measured]) -> str:
    steps = [s for run in runs for s in run.step_s]
    tps = sum(run.tokens for run in runs) / sum(sum(run.step_s) for run in runs)
    total = statistics.median(run.total_s for run in runs)
    return (
        f"{label:<26}{total:>12.2f}{statistics.mean(steps):>12.4f}{statistics.median(steps):>12.4f}"
        f"{max(steps):>10.4f}{tps:>12.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, smollm2, a folder or any name resolve_model accepts")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", type=int, default=3, help="first steps left out of the per-step figures")
    parser.add_argument("--bare-thread", choices=("worker", "main"), default="worker")
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads, both sides (1 is steadier on a busy machine)"
    )
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="base weights on every side")
    parser.add_argument("--plain", action="store_true", help="add the plain PyTorch loop side")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 6 steps, 1 round (CI)")
    options = parser.parse_args()
    DTYPE["name"] = options.dtype
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)  # training threads inherit it (checked: torch 2.13)
    if options.smoke:
        options.model, options.steps, options.rounds, options.skip, options.plain = "tiny", 6, 1, 1, True

    from kernel_magics.config import settings

    work = Path(tempfile.mkdtemp(prefix="km-bench-"))
    settings.cache_dir = str(work / "cache")
    settings.workspace = str(work / "ws")
    model = model_folder(options.model, work)
    main_thread = options.bare_thread == "main"

    warm = 2
    kernel_magics_sft(model, warm, work / "warmup-km", 0)  # imports and first-step costs off the clock
    bare_trl(model, warm, work / "warmup-trl", 0, main_thread)
    sides: dict[str, list[Measured]] = {"trl": [], "km": [], **({"plain": []} if options.plain else {})}
    for i in range(options.rounds):
        order = tuple(sides) if i % 2 == 0 else tuple(reversed(sides))  # drifting load hits every side alike
        for side in order:
            out = work / f"{side}-{i}"
            if side == "km":
                sides[side].append(kernel_magics_sft(model, options.steps, out, options.skip))
            else:
                sides[side].append(bare_trl(model, options.steps, out, options.skip, main_thread, side == "plain"))
        trl, km_run = sides["trl"][-1], sides["km"][-1]
        diff = max(abs(trl.losses[s] - km_run.losses[s]) for s in trl.losses)
        print(
            f"round {i + 1} ({order[0]} first): end to end TRL {trl.total_s:.1f} s, km.sft {km_run.total_s:.1f} s; "
            f"median s/step TRL {statistics.median(trl.step_s):.4f}, km.sft {statistics.median(km_run.step_s):.4f}; "
            f"max |loss diff| {diff:.1e}",
            flush=True,
        )
    print()
    print(
        f"{Path(str(model)).name}, LoRA r {LORA['r']} on q/v, batch {BATCH} x {MAX_LENGTH} tokens, {options.steps} "
        f"steps x {options.rounds} rounds, {OPTIM}, base weights {options.dtype}, bare TRL on the "
        f"{options.bare_thread} thread, CPU, "
        f"{torch_threads()} torch threads"
    )
    print(f"{'side':<26}{'end-to-end s':>12}{'mean s/st':>12}{'median':>12}{'max':>10}{'tokens/s':>12}")
    print(summary("bare trl.SFTTrainer", sides["trl"]))
    print(summary("km.sft + live dashboard", sides["km"]))
    if options.plain:
        print(summary("plain PyTorch loop", sides["plain"]))

    def rate(runs: list[Measured]) -> float:
        return sum(r.tokens for r in runs) / sum(sum(r.step_s) for r in runs)

    def total(runs: list[Measured]) -> float:
        return statistics.median(r.total_s for r in runs)

    print(
        f"ratio km / trl, tokens/s over all timed steps (target >= 0.98): {rate(sides['km']) / rate(sides['trl']):.3f}"
    )
    print(
        f"ratio trl / km, end-to-end time (>= 1 is km faster):            {total(sides['trl']) / total(sides['km']):.3f}"
    )
    if options.plain:
        print(
            f"ratio km / plain loop, tokens/s (target >= 1 / 1.05):            {rate(sides['km']) / rate(sides['plain']):.3f}"
        )


if __name__ == "__main__":
    main()
