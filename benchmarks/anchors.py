"""km.sft next to LLaMA-Factory and ms-swift on identical work, in fp32 and bf16: start-up, s/step and loss.

    python benchmarks/anchors.py --lf-python ENV/bin/python --swift-python ENV/bin/python \\
        [--models tiny,smollm2] [--dtype fp32|bf16|fp32,bf16] [--km-auto] [--km-compile] [--no-anchors] \\
        [--threads N] [--steps 30] [--rounds 2] [--row-tokens 64] [--smoke]

Installs nothing. LLaMA-Factory and ms-swift are looked for in the Python environments given with
``--lf-python`` / ``--swift-python`` (README.md, "Training speed", says how to make them); an absent one is
reported in one line and left out. Every side (a tool in one configuration: a row of the table) trains in its
own fresh process (its CLI, or a small driver script calling ``km.sft``), one at a time, sides alternated within
each round (the order reverses every round), on identical work: LoRA r 8 / alpha 16 / dropout 0.05 on
q_proj,v_proj, batch 4, max_length 256, lr 2e-4 cosine, seed 42, adamw_torch, one batch a step (ms-swift would
accumulate 4 batches by default), no gradient checkpointing, no checkpoints, logging every step, on the CPU; the
rows are the packaged ``sft.jsonl`` conversations cut to their last exchange and lengthened to exactly
``--row-tokens`` tokens in ChatML (see ``equal_length_rows``), formatted with that ChatML by every tool (km.sft
gets the model with it as its own template: see ``same_template``). Equal rows make every batch the same shape
whatever order a tool draws the rows in: a batch's padded length sets most of a step's cost, and with the
packaged rows as they are the tools' samplers draw different rows together. Each tool's training process imports
``_step_shapes``, which prints every batch's shape and the dtypes the step computed in; the table shows them, so
identical work and the dtype are checked, not assumed.

``--dtype`` (default fp32; ``fp32,bf16`` runs both side by side): every tool in each. fp32: an fp32 copy of the
model, LLaMA-Factory ``bf16: false``, ms-swift ``--torch_dtype float32 --fp16 false --bf16 false``, km.sft
``dtype="fp32"``. bf16 (each tool's best on a CPU): a bf16 copy of the model (LLaMA-Factory loads the stored
dtype), LLaMA-Factory ``bf16: true``, ms-swift ``--torch_dtype bfloat16 --bf16 true --use_cpu true``, km.sft
``dtype="bf16"``; the anchors keep LoRA weights fp32 and compute under bf16 autocast, km.sft trains bf16 base
weights with fp32 LoRA. ``--km-auto`` adds km.sft with ``dtype="auto"`` (the default; on the bf16 copy) and makes it
the reference of the ratios; ``--km-compile`` adds km.sft with ``compile=True`` in each dtype;
``--no-anchors`` leaves the anchors out.

What is timed, from the parent, by when each tool's step-log lines arrive (the children run unbuffered; km.sft's
steps by the wall time its worker logged them, see ``_child_runs.py``): **start-up** = process start to the first
step's log (imports, loading, data, the first step, and with ``--compile`` the compilation), **s/step** = the
median and mean gap between consecutive step logs after the first ``--skip``; **cpu s/step** = the median
CPU seconds the training process spent from one step's end to the next (``_step_shapes``' ``proc=``): on a
machine shared with other work wall seconds follow the load and CPU seconds stay near the step's cost, best
with ``--threads 1`` (torch's threads in every child; with several, a thread that waits for a descheduled
sibling spins, and under load that waiting dominates). The km.sft driver also trains a
second time (3 steps) in the same process (``warm``), after its next worker has finished importing: the start-up
a notebook user sees on the next run in a warm kernel. Every row has one assistant reply, so every tool puts the
loss on the same tokens; the table gives each side's last logged loss and mean loss, averaged over the rounds.
``--smoke``: km.sft alone on the tiny model, a few steps (< 60 s; the anchors too if given).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child_runs import Timing, child_env, find_tool, shapes_path, timed_lines  # noqa: E402
from sft_overhead import model_folder  # noqa: E402 - the benchmark's model names (tiny, smollm2, folders)

LORA_R, LORA_ALPHA, LORA_DROPOUT, BATCH, MAX_LENGTH, LR, SEED = 8, 16, 0.05, 4, 256, 2e-4, 42
FILLER = " Thanks for asking, and I hope this helps."  # lengthens replies to the benchmark's row length
KM_DRIVER = """
import json, os, sys, time
import kernel_magics as km
model, data, out, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
shapes = os.environ["KM_STEP_SHAPES_FILE"]
for name in ("cold", "warm"):
    if name == "warm":  # as a user who reads the last result first: the next worker has finished importing
        from kernel_magics.train.runtime import warm
        warm.wait_for_spare()
    print(f"KM-RUN {name} km_time={time.time()}", flush=True)
    steps = options["max_steps"] if name == "cold" else min(options["max_steps"], 3)  # warm: its start-up only
    run = km.sft(model, data, output_dir=f"{out}/{name}", verbose=False, **{**options, "max_steps": steps})
    assert run.wait() == "finished", run.error
    for row in run.rows:
        if row.get("loss") is not None:
            print(f"'loss': {row['loss']} km_time={row['time']}", flush=True)
    if os.path.exists(shapes):
        print(open(shapes).read(), flush=True)
        os.remove(shapes)
"""


# LLaMA-Factory's and ms-swift's "chatml" template: no default system message, unlike SmolLM2's own template
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def same_template(model: Path, work: Path) -> Path:
    """``model`` as every tool formats it: a view of the folder (weights linked) whose own chat template is the
    ChatML LLaMA-Factory and ms-swift format with, so km.sft trains on the same tokens (SmolLM2's template adds a
    default system message: 61 tokens a row on average instead of 44; Qwen's adds one too)."""
    view = work / f"{model.name}-chatml"
    view.mkdir(parents=True, exist_ok=True)
    for item in model.iterdir():
        if item.name not in ("chat_template.jinja", "tokenizer_config.json") and not (view / item.name).exists():
            (view / item.name).symlink_to(item.resolve())
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (view / "tokenizer_config.json").write_text(json.dumps(config))
    (view / "chat_template.jinja").write_text(CHATML)
    return view


def bf16_copy(model: Path, work: Path) -> Path:
    """``model`` stored in bf16 (built once): what the bf16 sides load. LLaMA-Factory loads the stored dtype
    whatever ``bf16: true`` says (its ``pure_bf16`` is refused on a CPU), so only a bf16 folder gives it bf16
    weights; SmolLM2 is published in bf16, so this is also the folder a user would have."""
    copy = work / f"{model.name}-bf16"
    if not (copy / "config.json").is_file():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).save_pretrained(copy)
        AutoTokenizer.from_pretrained(model).save_pretrained(copy)
    return copy


def equal_length_rows(model: Path, length: int, work: Path) -> tuple[Path, int]:
    """The packaged SFT conversations as single-turn rows (system message if any, the last user turn, the last
    assistant reply) each exactly ``length`` tokens long in ChatML with ``model``'s tokenizer: the reply is
    lengthened with a filler sentence; rows already longer, or that miss the length by a token merge, are left out.
    Returns the JSONL file and how many of the packaged rows it kept."""
    from transformers import AutoTokenizer

    from kernel_magics.testing import tiny_dataset

    tokenizer = AutoTokenizer.from_pretrained(str(model))

    def count(messages: list[dict[str, str]]) -> int:
        text = tokenizer.apply_chat_template(messages, chat_template=CHATML, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    filler = tokenizer(FILLER * (length // 4 + 1), add_special_tokens=False)["input_ids"]
    rows, source = [], [json.loads(line)["messages"] for line in Path(tiny_dataset("sft")).read_text().splitlines()]
    for messages in source:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        if last == 0 or messages[last - 1]["role"] != "user":
            continue
        row = [m for m in messages[:1] if m["role"] == "system"] + [dict(messages[last - 1]), dict(messages[last])]
        missing = length - count(row)
        if missing > 0:
            row[-1]["content"] += tokenizer.decode(filler[:missing])
        if count(row) == length:
            rows.append({"messages": row})
    path = work / f"rows-{model.name}-{length}.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path, len(rows)


@dataclass(frozen=True)
class Side:
    """One row of the table: a tool in one configuration."""

    tool: str  # km.sft | LLaMA-Factory | ms-swift
    dtype: str  # fp32 | bf16 | auto (km.sft only: what --dtype auto picks on this machine)
    compile: bool = False  # km.sft only: --compile

    @property
    def label(self) -> str:
        return f"{self.tool} {self.dtype}{' compile' if self.compile else ''}"


def run_side(side: Side, python: str, model: Path, data: Path, steps: int, out: Path, skip: int) -> Timing:
    if side.tool == "km.sft":
        return run_km(model, data, steps, out, skip, side)
    runner = run_llamafactory if side.tool == "LLaMA-Factory" else run_swift
    return runner(python, model, data, steps, out, skip, side.dtype == "bf16")


def run_km(model: Path, data: Path, steps: int, out: Path, skip: int, side: Side) -> Timing:
    script = out / "km_driver.py"
    out.mkdir(parents=True, exist_ok=True)
    script.write_text(KM_DRIVER)
    options = dict(
        method="lora", lora_r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
        target_modules=["q_proj", "v_proj"], lr=LR, seed=SEED, max_steps=steps, batch_size=BATCH,
        max_length=MAX_LENGTH, optim="adamw_torch", logging_steps=1, save_steps=10**6, device="cpu",
        dtype=side.dtype, **({"compile": True} if side.compile else {}),
    )  # fmt: skip
    command = [sys.executable, str(script), str(model), str(data), str(out), json.dumps(options)]
    env = {**child_env(shapes_path(out, worker=True)), "KM_STEP_SHAPES_FILE": str(out / "shapes.log")}
    seen = timed_lines(command, env, out / "km.log")
    warm_start = seen.runs[1]
    timing = seen.timing(until=warm_start, skip=skip)
    timing.warm_startup_s = next(t for t in seen.steps if t > warm_start) - warm_start
    return timing


def is_qwen(model: Path) -> bool:
    return json.loads((model / "config.json").read_text()).get("model_type", "").startswith("qwen")


def run_llamafactory(python: str, model: Path, data: Path, steps: int, out: Path, skip: int, bf16: bool) -> Timing:
    """LLaMA-Factory's CLI; ``bf16``: its ``bf16: true`` (weights loaded in bf16, LoRA kept fp32, autocast)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset_info.json").write_text(json.dumps({"km_sft": {
        "file_name": str(data), "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"},
    }}))  # fmt: skip
    config = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": LORA_R, "lora_alpha": LORA_ALPHA, "lora_dropout": LORA_DROPOUT, "lora_target": "q_proj,v_proj",
        "dataset": "km_sft", "dataset_dir": str(out), "template": "chatml",
        "cutoff_len": MAX_LENGTH, "max_steps": steps, "per_device_train_batch_size": BATCH,
        "gradient_accumulation_steps": 1,
        "learning_rate": LR, "lr_scheduler_type": "cosine", "warmup_ratio": 0.03, "logging_steps": 1,
        "save_strategy": "no", "output_dir": str(out / "run"), "overwrite_output_dir": True, "use_cpu": True,
        "bf16": bf16, "fp16": False, "disable_gradient_checkpointing": True, "seed": SEED, "report_to": "none",
        "optim": "adamw_torch", "dataloader_num_workers": 0, "plot_loss": False,
    }  # fmt: skip
    # JSON text in a .yaml file: LLaMA-Factory 0.9.5 reads .yaml configs (its .json reader fails on a Path)
    (out / "train.yaml").write_text(json.dumps(config))
    stub = torchaudio_stub(python, out)
    command = [python, "-c", "import sys, _step_shapes; from llamafactory.cli import main; "
               "sys.argv[1:] = ['train', sys.argv[1]]; main()", str(out / "train.yaml")]  # fmt: skip
    return timed_lines(command, child_env(shapes_path(out), stub), out / "lf.log").timing(skip=skip)


def torchaudio_stub(python: str, out: Path) -> str | None:
    """LLaMA-Factory imports torchaudio, and no torchaudio wheel loads next to CPU torch: an empty stand-in,
    on this run's PYTHONPATH only, when the environment's own torchaudio does not import."""
    if subprocess.run([python, "-c", "import torchaudio"], capture_output=True).returncode == 0:
        return None
    (out / "stub" / "torchaudio").mkdir(parents=True, exist_ok=True)
    (out / "stub" / "torchaudio" / "__init__.py").write_text("")
    return str(out / "stub")


def run_swift(python: str, model: Path, data: Path, steps: int, out: Path, skip: int, bf16: bool) -> Timing:
    """ms-swift's ``swift sft``; ``bf16``: ``--torch_dtype bfloat16 --bf16 true --use_cpu true`` (else float32 with
    fp16 and bf16 off)."""
    kind = ["--model_type", "qwen2" if is_qwen(model) else "llama", "--template", "chatml"]
    options = {
        "model": model, "tuner_type": "lora", "lora_rank": LORA_R, "lora_alpha": LORA_ALPHA,
        "lora_dropout": LORA_DROPOUT, "target_modules": "q_proj v_proj", "fp16": "false",
        "torch_dtype": "bfloat16" if bf16 else "float32", "bf16": str(bf16).lower(),
        **({"use_cpu": "true"} if bf16 else {}),  # else: "Your setup doesn't support bf16/gpu"
        "check_model": "false", "split_dataset_ratio": 0, "dataset": data, "max_length": MAX_LENGTH,
        "per_device_train_batch_size": BATCH, "gradient_accumulation_steps": 1,  # ms-swift's default fills 16 rows
        "learning_rate": LR, "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.03, "max_steps": steps, "logging_steps": 1, "save_strategy": "no",
        "output_dir": out / "run", "seed": SEED, "gradient_checkpointing": "false", "optim": "adamw_torch",
        "report_to": "none", "dataloader_num_workers": 0, "dataset_num_proc": 1,
    }  # fmt: skip
    flags = [part for key, value in options.items() for part in (f"--{key}", *str(value).split())]
    command = [python, "-c", "import runpy, sys, _step_shapes; sys.argv[0] = 'swift-sft'; "
               "runpy.run_module('swift.cli.sft', run_name='__main__')", *kind, *flags]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    return timed_lines(command, child_env(shapes_path(out)), out / "swift.log").timing(skip=skip)


def batch_shapes(timings: list[Timing]) -> str:
    """The batch shapes a tool trained on: one shape, or how many different ones (``?`` if none was reported)."""
    shapes = {shape for t in timings for shape in t.batches}
    if not shapes:
        return "?"
    return shapes.pop() if len(shapes) == 1 else f"{len(shapes)} shapes"


def table(model: str, results: dict[str, list[Timing]], rows: str, reference: str = "km.sft") -> None:
    """One row per side; ratios are each side's median s/step over ``reference``'s (> 1: ``reference`` is faster).
    Losses: the last logged loss and the mean over all steps, averaged over the rounds."""
    print(f"\n{model}: LoRA r {LORA_R} q/v, batch {BATCH}, {rows}, CPU (fresh process each run); ratios vs {reference}")
    print(
        f"{'side':<24}{'batches':>8}{'compute':>10}{'start-up s':>12}{'warm start s':>13}{'median s/step':>14}"
        f"{'mean s/step':>12}{'vs ref':>8}{'fwd+bwd s':>10}{'cpu s/step':>11}{'vs ref':>8}{'final loss':>11}"
        f"{'mean loss':>10}"
    )
    ref_median, ref_cpu = (median_of(results.get(reference, []), key) for key in ("step_s", "step_cpu_s"))
    for side, timings in results.items():
        steps = [s for t in timings for s in t.step_s]
        median = statistics.median(steps)
        warm = [t.warm_startup_s for t in timings if t.warm_startup_s is not None]
        start = f"{min(t.startup_s for t in timings):.1f}-{max(t.startup_s for t in timings):.1f}"
        ratio = f"{median / ref_median:.2f}" if ref_median else "-"
        cpu = median_of(timings, "step_cpu_s")
        cpu_text = f"{cpu:>11.3f}{cpu / ref_cpu if ref_cpu else float('nan'):>8.2f}" if cpu else f"{'?':>11}{'-':>8}"
        warm_text = f"{min(warm):.1f}-{max(warm):.1f}" if warm else "-"
        inner = [s for t in timings for s in t.forward_backward_s]
        inner_text = f"{statistics.median(inner):.3f}" if inner else "?"
        compute = ",".join(sorted({c for t in timings for c in t.compute})) or "?"
        finals = [t.losses[-1] for t in timings if t.losses]
        means = [statistics.mean(t.losses) for t in timings if t.losses]
        losses = f"{statistics.mean(finals):>11.3f}{statistics.mean(means):>10.3f}" if finals else f"{'?':>11}{'?':>10}"
        print(
            f"{side:<24}{batch_shapes(timings):>8}{compute:>10}{start:>12}{warm_text:>13}{median:>14.3f}"
            f"{statistics.mean(steps):>12.3f}{ratio:>8}{inner_text:>10}{cpu_text}{losses}"
        )
    for side, timings in results.items():
        if side != reference and reference in results:
            paired = [
                statistics.median(t.step_s) / statistics.median(ref.step_s)
                for ref, t in zip(results[reference], timings, strict=False)
            ]
            print(f"{side} / {reference} median s/step, round by round: " + ", ".join(f"{r:.2f}" for r in paired))
    reported = [t.batches for timings in results.values() for t in timings]
    if not all(reported) or len({shape for batches in reported for shape in batches}) != 1:
        print("the tools' batches were not all one identical shape: s/step compares different work")


def median_of(timings: list[Timing], key: str) -> float | None:
    """The median of one per-step figure (``step_s``, ``step_cpu_s``) over every round, None if there is none."""
    values = [v for t in timings for v in getattr(t, key)]
    return statistics.median(values) if values else None


def sides_to_run(options: argparse.Namespace) -> dict[Side, str]:
    """Every side with the Python it runs under: km.sft in each ``--dtype`` (and ``auto``, with ``--km-auto``;
    compiled too, with ``--km-compile``), each anchor found in each dtype (``--anchors``)."""
    dtypes = options.dtype.split(",")
    km = [Side("km.sft", d) for d in (["auto"] if options.km_auto else []) + dtypes]
    km += [Side("km.sft", d, compile=True) for d in dtypes if options.km_compile]
    sides = {side: sys.executable for side in km}
    for label, python, module in (("LLaMA-Factory", options.lf_python, "llamafactory"),
                                  ("ms-swift", options.swift_python, "swift")):  # fmt: skip
        found = find_tool(python, module, label) if options.anchors else None
        sides.update({Side(label, d): found for d in dtypes if found})
    return sides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lf-python", help="a Python whose environment has llamafactory")
    parser.add_argument("--swift-python", help="a Python whose environment has ms-swift")
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2, folders")
    parser.add_argument("--dtype", default="fp32", help="comma-separated: fp32, bf16 (every tool in each)")
    parser.add_argument("--km-auto", action="store_true", help="also km.sft with --dtype auto")
    parser.add_argument("--km-compile", action="store_true", help="also km.sft with --compile in each dtype")
    parser.add_argument("--no-anchors", dest="anchors", action="store_false", help="km.sft sides only")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every child (0: torch's default)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", type=int, default=3, help="first step logs left out of s/step")
    parser.add_argument(
        "--row-tokens", type=int, default=64, help="every row's length in ChatML tokens (0: as packaged)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model, 4 steps, 1 round")
    options = parser.parse_args()
    if options.smoke:
        options.models, options.steps, options.rounds, options.skip = "tiny", 4, 1, 0
    if set(options.dtype.split(",")) - {"fp32", "bf16"}:
        parser.error(f"--dtype takes fp32, bf16 or both (fp32,bf16), not {options.dtype}")
    if options.threads:  # every child's environment is a copy of this process's
        os.environ.update(OMP_NUM_THREADS=str(options.threads), MKL_NUM_THREADS=str(options.threads))
    sides = sides_to_run(options)
    dtypes = {side.dtype for side in sides}
    reference = Side("km.sft", "auto" if options.km_auto else options.dtype.split(",")[0]).label

    from kernel_magics.config import settings
    from kernel_magics.testing import tiny_dataset

    work = Path(tempfile.mkdtemp(prefix="km-anchors-"))
    settings.cache_dir = str(work / "cache")
    print("load average at the start:", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    for name in options.models.split(","):
        try:
            stored = model_folder(name.strip(), work).resolve()
            model = same_template(stored, work)
            in_bf16 = same_template(bf16_copy(stored, work), work) if {"bf16", "auto"} & set(dtypes) else model
        except (SystemExit, Exception) as exc:  # noqa: BLE001 - one line, then the other models
            print(f"model {name}: unavailable ({str(exc)[:200]}); left out")
            continue
        data, rows = Path(tiny_dataset("sft")), "the packaged rows as they are"
        if options.row_tokens:
            data, kept = equal_length_rows(model, options.row_tokens, work)
            rows = f"{kept} rows of {options.row_tokens} tokens"
            if kept < BATCH * (options.steps + 1):
                raise SystemExit(f"only {kept} rows fit {options.row_tokens} tokens; raise --row-tokens")
        results: dict[str, list[Timing]] = {side.label: [] for side in sides}
        for i in range(options.rounds):
            for side in list(sides) if i % 2 == 0 else list(reversed(sides)):
                out = work / f"{model.name}-{side.label.replace(' ', '-')}-{i}"
                folder = model if side.dtype == "fp32" else in_bf16
                t = run_side(side, sides[side], folder, data, options.steps, out, options.skip)
                results[side.label].append(t)
                print(f"{model.name} round {i + 1} {side.label}: start-up {t.startup_s:.1f} s, "
                      f"median {statistics.median(t.step_s):.3f} s/step, loss {t.losses[-1] if t.losses else '?'}, "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        table(model.name, results, rows, reference)


if __name__ == "__main__":
    main()
