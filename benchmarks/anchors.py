"""km.sft next to LLaMA-Factory and ms-swift on identical work: start-up to the first step and s/step.

    python benchmarks/anchors.py --lf-python ENV/bin/python --swift-python ENV/bin/python \\
        [--models tiny,smollm2] [--steps 30] [--rounds 2] [--smoke]

Installs nothing. LLaMA-Factory and ms-swift are looked for in the Python environments given with
``--lf-python`` / ``--swift-python`` (README.md, "Training speed", says how to make them); an absent one is
reported in one line and left out. Every tool trains in its own fresh process (its CLI, or a small driver
script calling ``km.sft``), one at a time, tools alternated within each round (the order reverses every
round), on identical work: LoRA r 8 / alpha 16 / dropout 0.05 on q_proj,v_proj, fp32, batch 4, max_length 256,
lr 2e-4 cosine, seed 42, adamw_torch, one batch a step (ms-swift would accumulate 4 batches by default), no
gradient checkpointing, no checkpoints, logging every step, on the CPU; the rows are the packaged ``sft.jsonl``
conversations cut to their last exchange and lengthened to exactly ``--row-tokens`` tokens in ChatML (see
``equal_length_rows``), formatted with that ChatML by every tool (km.sft gets the model with it as its own
template: see ``same_template``). Equal rows make every batch the same shape whatever order a tool draws the rows
in: with the packaged rows as they are, the tools' batches differ (their samplers draw different rows together),
a batch's padded length sets most of a step's cost (4 x 35 tokens: ~0.5 s on SmolLM2, 4 x 90: ~1.0 s), and
s/step compared batch mixes, not tools. Each child imports ``_step_shapes`` first, which prints every batch's
shape; the table shows them, so identical work is checked, not assumed.

What is timed, from the parent, by when each tool's step-log lines arrive (the children run unbuffered):
**start-up** = process start to the first step's log (imports, loading, data, the first step),
**s/step** = the median and mean gap between consecutive step logs after the first ``--skip``. The km.sft
driver also trains a second time in the same process (``warm``): the start-up a notebook user sees on the
next run in a warm kernel. Every row has one assistant reply, so every tool puts the loss on the same tokens.
``--smoke``: km.sft alone on the tiny model, a few steps (< 60 s; the anchors too if given).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_overhead import model_folder  # noqa: E402 - the benchmark's model names (tiny, smollm2, folders)

LORA_R, LORA_ALPHA, LORA_DROPOUT, BATCH, MAX_LENGTH, LR, SEED = 8, 16, 0.05, 4, 256, 2e-4, 42
STEP_LINE = re.compile(r"""['"]?loss['"]?\s*[:=]\s*['"]?[0-9.]+""")  # HF / LF dicts, swift's json lines
SHAPE_LINE = re.compile(r"KM-STEP-SHAPE (\S+) .*seconds=([0-9.]+)")  # printed by _step_shapes.py
FILLER = " Thanks for asking, and I hope this helps."  # lengthens replies to the benchmark's row length
KM_DRIVER = """
import json, sys
import _step_shapes
import kernel_magics as km
model, data, out, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
for name in ("cold", "warm"):
    print(f"KM-RUN {name}", flush=True)
    run = km.sft(model, data, output_dir=f"{out}/{name}", verbose=False, **options)
    run.subscribe(lambda e, row: e == "metrics" and "loss" in row and print(f"'loss': {row['loss']}", flush=True))
    assert run.wait() == "finished", run.error
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


def shapes_path(out: Path) -> str:
    """A folder holding only ``_step_shapes.py``, for a child's PYTHONPATH (the tool's own imports see nothing else
    of this folder)."""
    folder = out / "shapes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_step_shapes.py").write_text((Path(__file__).parent / "_step_shapes.py").read_text())
    return str(folder)


@dataclass
class Timing:
    startup_s: float
    step_s: list[float] = field(default_factory=list)
    warm_startup_s: float | None = None
    batches: list[str] = field(default_factory=list)  # each training step's batch shape, e.g. "4x64"
    forward_backward_s: list[float] = field(default_factory=list)  # each step's Trainer.training_step


@dataclass
class ChildLines:
    """Seconds from a child's start to each of its step logs, KM-RUN markers and batch shapes."""

    steps: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)
    shapes: list[tuple[float, str, float]] = field(default_factory=list)  # (arrival, shape, training_step s)

    def timing(self, until: float = float("inf"), skip: int = 0) -> Timing:
        """The start-up, step gaps and batches of the run whose step logs arrive before ``until``."""
        steps = [t for t in self.steps if t < until]
        shapes = [(shape, seconds) for t, shape, seconds in self.shapes if t < until]
        return Timing(steps[0], gaps(steps, skip), None, [s for s, _ in shapes], [s for _, s in shapes][skip:])


def find_tool(python: str | None, module: str, label: str) -> str | None:
    """``python`` if it imports ``module``, else None after one line saying what is missing."""
    if not python:
        print(f"{label}: not given (--{'lf' if 'llama' in module else 'swift'}-python ENV/bin/python); left out")
        return None
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["not found"])[-1][:160]
        print(f"{label}: {python} cannot import {module} ({last}); left out")
        return None
    return python


def timed_lines(command: list[str], env: dict[str, str], log: Path) -> ChildLines:
    """Run ``command``; when its step logs, KM-RUN markers and batch shapes arrive."""
    start = time.perf_counter()
    seen = ChildLines()
    with open(log, "w") as sink:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in child.stdout:  # type: ignore[union-attr]
            sink.write(line)
            now = time.perf_counter() - start
            shape = SHAPE_LINE.search(line)
            if line.startswith("KM-RUN"):
                seen.runs.append(now)
            elif shape:
                seen.shapes.append((now, shape.group(1), float(shape.group(2))))
            elif STEP_LINE.search(line) and "train_runtime" not in line and "train_loss" not in line:
                seen.steps.append(now)
        code = child.wait()
    if code != 0:
        raise SystemExit(f"{command[0]} ... exited {code}; its output is in {log}")
    return seen


def child_env(*extra_paths: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.update(TOKENIZERS_PARALLELISM="false", DISABLE_VERSION_CHECK="1", WANDB_DISABLED="true")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*extra_paths, env.get("PYTHONPATH")) if p)
    return env


def run_km(model: Path, data: Path, steps: int, out: Path, skip: int) -> Timing:
    script = out / "km_driver.py"
    out.mkdir(parents=True, exist_ok=True)
    script.write_text(KM_DRIVER)
    options = dict(
        method="lora", lora_r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
        target_modules=["q_proj", "v_proj"], lr=LR, seed=SEED, max_steps=steps, batch_size=BATCH,
        max_length=MAX_LENGTH, optim="adamw_torch", logging_steps=1, save_steps=10**6, device="cpu",
    )  # fmt: skip
    command = [sys.executable, str(script), str(model), str(data), str(out), json.dumps(options)]
    seen = timed_lines(command, child_env(shapes_path(out)), out / "km.log")
    warm_start = seen.runs[1]
    timing = seen.timing(until=warm_start, skip=skip)
    timing.warm_startup_s = next(t for t in seen.steps if t > warm_start) - warm_start
    return timing


def gaps(times: list[float], skip: int) -> list[float]:
    kept = times[skip:]
    return [b - a for a, b in zip(kept, kept[1:], strict=False)]


def is_qwen(model: Path) -> bool:
    return json.loads((model / "config.json").read_text()).get("model_type", "").startswith("qwen")


def run_llamafactory(python: str, model: Path, data: Path, steps: int, out: Path, skip: int) -> Timing:
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
        "bf16": False, "fp16": False, "disable_gradient_checkpointing": True, "seed": SEED, "report_to": "none",
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


def run_swift(python: str, model: Path, data: Path, steps: int, out: Path, skip: int) -> Timing:
    kind = ["--model_type", "qwen2" if is_qwen(model) else "llama", "--template", "chatml"]
    options = {
        "model": model, "tuner_type": "lora", "lora_rank": LORA_R, "lora_alpha": LORA_ALPHA,
        "lora_dropout": LORA_DROPOUT, "target_modules": "q_proj v_proj", "torch_dtype": "float32", "fp16": "false",
        "bf16": "false", "check_model": "false", "split_dataset_ratio": 0, "dataset": data, "max_length": MAX_LENGTH,
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


def table(model: str, results: dict[str, list[Timing]], rows: str) -> None:
    print(f"\n{model}: LoRA r {LORA_R} q/v, fp32, batch {BATCH}, {rows}, CPU (fresh process each run)")
    print(
        f"{'tool':<16}{'batches':>10}{'start-up s':>12}{'warm start s':>14}{'median s/step':>15}{'mean s/step':>13}"
        f"{'vs km.sft':>11}{'fwd+bwd s':>11}"
    )
    km_median = (
        statistics.median(s for t in results.get("km.sft", []) for s in t.step_s) if "km.sft" in results else None
    )
    for tool, timings in results.items():
        steps = [s for t in timings for s in t.step_s]
        median = statistics.median(steps)
        warm = [t.warm_startup_s for t in timings if t.warm_startup_s is not None]
        start = f"{min(t.startup_s for t in timings):.1f}-{max(t.startup_s for t in timings):.1f}"
        ratio = f"{median / km_median:.2f}" if km_median else "-"
        warm_text = f"{min(warm):.1f}-{max(warm):.1f}" if warm else "-"
        inner = [s for t in timings for s in t.forward_backward_s]
        inner_text = f"{statistics.median(inner):.3f}" if inner else "?"
        print(
            f"{tool:<16}{batch_shapes(timings):>10}{start:>12}{warm_text:>14}{median:>15.3f}"
            f"{statistics.mean(steps):>13.3f}{ratio:>11}{inner_text:>11}"
        )
    for tool, timings in results.items():
        if tool != "km.sft" and "km.sft" in results:
            paired = [
                statistics.median(t.step_s) / statistics.median(km.step_s)
                for km, t in zip(results["km.sft"], timings, strict=False)
            ]
            print(f"{tool} / km.sft median s/step, round by round: " + ", ".join(f"{r:.2f}" for r in paired))
    reported = [t.batches for timings in results.values() for t in timings]
    if not all(reported) or len({shape for batches in reported for shape in batches}) != 1:
        print("the tools' batches were not all one identical shape: s/step compares different work")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lf-python", help="a Python whose environment has llamafactory")
    parser.add_argument("--swift-python", help="a Python whose environment has ms-swift")
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2, folders")
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
    tools = {"km.sft": sys.executable}
    for label, python, module in (("LLaMA-Factory", options.lf_python, "llamafactory"),
                                  ("ms-swift", options.swift_python, "swift")):  # fmt: skip
        found = find_tool(python, module, label)
        if found:
            tools[label] = found
    runners = {"km.sft": lambda _python, *a: run_km(*a), "LLaMA-Factory": run_llamafactory, "ms-swift": run_swift}

    from kernel_magics.config import settings
    from kernel_magics.testing import tiny_dataset

    work = Path(tempfile.mkdtemp(prefix="km-anchors-"))
    settings.cache_dir = str(work / "cache")
    for name in options.models.split(","):
        try:
            model = same_template(model_folder(name.strip(), work).resolve(), work)
        except (SystemExit, Exception) as exc:  # noqa: BLE001 - one line, then the other models
            print(f"model {name}: unavailable ({str(exc)[:200]}); left out")
            continue
        data, rows = Path(tiny_dataset("sft")), "the packaged rows as they are"
        if options.row_tokens:
            data, kept = equal_length_rows(model, options.row_tokens, work)
            rows = f"{kept} rows of {options.row_tokens} tokens"
            if kept < BATCH * (options.steps + 1):
                raise SystemExit(f"only {kept} rows fit {options.row_tokens} tokens; raise --row-tokens")
        results: dict[str, list[Timing]] = {tool: [] for tool in tools}
        for i in range(options.rounds):
            order = list(tools) if i % 2 == 0 else list(reversed(tools))
            for tool in order:
                out = work / f"{model.name}-{tool}-{i}"
                results[tool].append(runners[tool](tools[tool], model, data, options.steps, out, options.skip))
                t = results[tool][-1]
                print(f"{model.name} round {i + 1} {tool}: start-up {t.startup_s:.1f} s, "
                      f"median {statistics.median(t.step_s):.3f} s/step", flush=True)  # fmt: skip
        table(model.name, results, rows)


if __name__ == "__main__":
    main()
