"""What the GPU check builds and measures with: random-initialised model folders of real shapes, rows of a
fixed token length, per-step figures of a run, the FLOP count of a step and both SFT sides (see gpu_check.py)."""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = (
    "sft_lora_mfu", "qlora_peak_vs_estimate", "dpo", "grpo", "serve", "classroom", "levers", "pytest_gpu", "kernel_memory",
)  # fmt: skip
SHAPES = {  # Qwen2.5 text configs (hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings)
    "0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "1.5b": (1536, 8960, 28, 12, 2, 151936, True),
    "7b": (3584, 18944, 28, 28, 4, 152064, False),
}
DRY_SHAPE = (128, 256, 2, 4, 2, 2048, True)  # every shape in a dry run (vocab = the tiny tokenizer's)
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}
LORA = dict(lora_r=16, lora_alpha=32, lora_dropout=0.0)
SEED = 0


class Check:
    """Sizes for a real GPU run or a dry run on the CPU, and the folders this run writes."""

    def __init__(self, dry: bool, work: Path) -> None:
        import torch

        self.dry, self.work = dry, work
        self.cuda = torch.cuda.is_available() and not dry
        self.device = "cuda" if self.cuda else "cpu"
        self.seq = 128 if dry else 2048
        self.steps = 3 if dry else 12
        self.skip = 1 if dry else 3  # warm-up steps left out of the figures
        self.optim = "adamw_torch_fused" if self.cuda else "adamw_torch"
        from kernel_magics.config import settings
        from kernel_magics.testing import make_tiny_model

        settings.cache_dir, settings.workspace = str(work / "cache"), str(work / "ws")
        self.tiny = make_tiny_model(work / "tiny", "qwen2")
        self._models: dict[str, Path] = {}
        self._rows: dict[int, Path] = {}

    def model(self, shape: str) -> Path:
        """A random-initialised model folder of this shape (built once, bf16 on CUDA)."""
        if shape not in self._models:
            self._models[shape] = build_model(
                self.work / f"qwen2.5-{shape}", DRY_SHAPE if self.dry else SHAPES[shape], self.tiny, self.device
            )
        return self._models[shape]

    def rows(self, tokens: int, n: int = 64) -> Path:
        """A jsonl of ``n`` chats that each template to just under ``tokens`` tokens."""
        if tokens not in self._rows:
            self._rows[tokens] = long_rows(self.tiny, self.work / f"rows-{tokens}.jsonl", tokens, n)
        return self._rows[tokens]

    def mixed_rows(self, tokens: int, n: int = 64) -> Path:
        """A jsonl of ``n`` chats of mixed lengths (about 1/8, 1/4, 1/2 and all of ``tokens``, in turn): batches
        with padding, which padding-free batching removes."""
        path = self.work / f"mixed-{tokens}.jsonl"
        if not path.exists():
            parts = [self.rows(max(tokens // k, 64), n).read_text().splitlines() for k in (8, 4, 2, 1)]
            path.write_text("".join(parts[i % 4][i] + "\n" for i in range(n)))
        return path


def build_model(folder: Path, shape: tuple, tiny: Path, device: str) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    hidden, inter, layers, heads, kv, vocab, tied = shape
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = Qwen2Config(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=32768,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(SEED)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    release()
    return folder


def long_rows(tiny: Path, path: Path, tokens: int, n: int) -> Path:
    from transformers import AutoTokenizer

    from kernel_magics.testing import tiny_dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    words = " ".join(json.loads(line)["messages"][-1]["content"] for line in tiny_dataset("sft").open()).split()
    rng = random.Random(SEED)

    def chat(count: int) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": "Write on."},
            {"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(count))},
        ]

    def length(messages: list[dict[str, str]]) -> int:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])

    count, target = 8, tokens - 16
    while length(chat(count)) < target:
        count *= 2
    low, high = count // 2, count
    while high - low > 1:  # about the largest word count that stays under the target
        middle = (low + high) // 2
        low, high = (middle, high) if length(chat(middle)) < target else (low, middle)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(n):
            words_here, messages = low, chat(low)
            while length(messages) > tokens - 8:  # word draws differ in length: trim until the row fits
                words_here -= 1
                messages = chat(words_here)
            out.write(json.dumps({"messages": messages}) + "\n")
    return path


def release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def reset_peak() -> None:
    import torch

    release()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gb(check: Check) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 1024**3, 3) if check.cuda else None


def step_figures(run: Any, skip: int) -> dict[str, float | None]:
    """s/step and tokens/s of a finished run, from its step log (first ``skip`` steps left out)."""
    frame = run.metrics
    frame = frame[frame["loss"].notna()] if "loss" in frame else frame
    seconds = frame["elapsed_s"].diff().dropna().iloc[skip:]
    rates = frame["tokens_per_s"].dropna().iloc[skip:] if "tokens_per_s" in frame else []
    return {
        "s_per_step": round(float(seconds.median()), 4) if len(seconds) else None,
        "tokens_per_s_median": round(float(statistics.median(rates)), 1) if len(rates) else None,
        "tokens_per_s_mean": round(float(statistics.fmean(rates)), 1) if len(rates) else None,
    }


def finished(run: Any) -> Any:
    status = run.wait()
    if status != "finished":
        raise RuntimeError(f"run {run.name} {status}: {run.error}")
    return run


def flops_per_token(folder: Path, seq: int, full: bool) -> float:
    config = json.loads((folder / "config.json").read_text())
    d, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * d // config["num_attention_heads"]
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * inter  # q, o, k, v, gate/up/down
    matmul = layers * per_layer + config["vocab_size"] * d  # + LM head
    return (6 if full else 4) * matmul + 12 * layers * d * seq


def card_peak() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name()
    return name, next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def km_sft(check: Check, folder: Path, data: Path, method: str, **extra: Any) -> Any:
    import kernel_magics as km

    options = dict(
        LORA,
        method=method,
        max_steps=check.steps,
        batch_size=4 if check.cuda else 2,
        max_length=check.seq,
        lr=1e-4,
        seed=SEED,
        logging_steps=1,
        save_steps=10**6,
        optim=check.optim,
        gradient_checkpointing=False,
        verbose=False,
    )
    options.update(extra)
    return finished(km.sft(str(folder), str(data), **options))


def bare_trl_sft(check: Check, folder: Path, data: Path, steps: int | None = None) -> dict[str, float | None]:
    """The same LoRA SFT through bare ``trl.SFTTrainer``, measured like ``km.sft``'s step log."""
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.rates: list[float] = []
            self.seconds: list[float] = []
            self.last = (time.perf_counter(), 0)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if logs and "loss" in logs:
                now, tokens = time.perf_counter(), state.num_input_tokens_seen
                self.rates.append((tokens - self.last[1]) / (now - self.last[0]))
                self.seconds.append(now - self.last[0])
                self.last = (now, tokens)

    datasets.disable_progress_bars()
    dtype = torch.bfloat16 if check.cuda else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa").to(check.device)
    model = get_peft_model(
        model,
        LoraConfig(
            r=LORA["lora_r"],
            lora_alpha=LORA["lora_alpha"],
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    config = SFTConfig(
        output_dir=str(check.work / "trl-out"),
        max_steps=steps or check.steps,
        per_device_train_batch_size=4 if check.cuda else 2,
        learning_rate=1e-4,
        seed=SEED,
        data_seed=SEED,
        max_length=check.seq,
        logging_steps=1,
        save_strategy="no",
        assistant_only_loss=True,
        use_cpu=not check.cuda,
        bf16=check.cuda,
        optim=check.optim,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )
    train = datasets.load_dataset("json", data_files=str(data), split="train")
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=train, processing_class=AutoTokenizer.from_pretrained(folder)
    )
    trainer.remove_callback(PrinterCallback)
    clock = StepClock()
    trainer.add_callback(clock)
    clock.last = (time.perf_counter(), 0)
    trainer.train()
    del trainer, model
    release()
    rates, seconds = clock.rates[check.skip :] or clock.rates, clock.seconds[check.skip :] or clock.seconds
    return {
        "s_per_step": round(statistics.median(seconds), 4),
        "tokens_per_s_median": round(statistics.median(rates), 1),
        "tokens_per_s_mean": round(statistics.fmean(rates), 1),
    }


def mfu(tokens_per_s: float | None, flops: float, peak: float | None) -> float | None:
    return round(tokens_per_s * flops / peak, 4) if tokens_per_s and peak else None
