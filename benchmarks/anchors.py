"""km.sft next to LLaMA-Factory and ms-swift on identical work: start-up to the first step and s/step.

    python benchmarks/anchors.py --lf-python ENV/bin/python --swift-python ENV/bin/python \\
        [--models tiny,smollm2] [--steps 30] [--rounds 2] [--smoke]

Installs nothing. LLaMA-Factory and ms-swift are looked for in the Python environments given with
``--lf-python`` / ``--swift-python`` (README.md, "Training speed", says how to make them); an absent one is
reported in one line and left out. Every tool trains in its own fresh process (its CLI, or a small driver
script calling ``km.sft``), one at a time, tools alternated within each round (the order reverses every
round), on identical work: LoRA r 8 / alpha 16 / dropout 0.05 on q_proj,v_proj, fp32, batch 4, 256 tokens,
the packaged ``sft.jsonl`` conversation rows, ChatML-formatted the same way by every tool (km.sft gets the
model with that template as its own: see ``same_template``), lr 2e-4 cosine,
seed 42, adamw_torch, one batch a step (ms-swift would accumulate 4 batches by default), no gradient
checkpointing, no checkpoints, logging every step, on the CPU.

What is timed, from the parent, by when each tool's step-log lines arrive (the children run unbuffered):
**start-up** = process start to the first step's log (imports, loading, data, the first step),
**s/step** = the median and mean gap between consecutive step logs after the first ``--skip``. The km.sft
driver also trains a second time in the same process (``warm``): the start-up a notebook user sees on the
next run in a warm kernel. Loss masks differ a little: LLaMA-Factory and ms-swift put loss on every assistant
turn, km.sft on the last one when the template has no generation markers (most rows have one turn).
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
KM_DRIVER = """
import json, sys
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
    """``model`` as every tool formats it: for the models LLaMA-Factory and ms-swift format with ChatML, a view of
    the folder (weights linked) whose own chat template is that ChatML, so km.sft trains on the same tokens
    (SmolLM2's template adds a default system message: 61 tokens a row on average instead of 44)."""
    if is_qwen(model):
        return model
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


@dataclass
class Timing:
    startup_s: float
    step_s: list[float] = field(default_factory=list)
    warm_startup_s: float | None = None


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


def timed_lines(command: list[str], env: dict[str, str], log: Path) -> tuple[float, list[float], list[float]]:
    """Run ``command``; seconds from its start to each step-log line, and to each KM-RUN marker."""
    start = time.perf_counter()
    steps, runs = [], []
    with open(log, "w") as sink:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in child.stdout:  # type: ignore[union-attr]
            sink.write(line)
            now = time.perf_counter() - start
            if line.startswith("KM-RUN"):
                runs.append(now)
            elif STEP_LINE.search(line) and "train_runtime" not in line and "train_loss" not in line:
                steps.append(now)
        code = child.wait()
    if code != 0:
        raise SystemExit(f"{command[0]} ... exited {code}; its output is in {log}")
    return time.perf_counter() - start, steps, runs


def child_env(extra_path: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.update(TOKENIZERS_PARALLELISM="false", DISABLE_VERSION_CHECK="1", WANDB_DISABLED="true")
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH")) if p)
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
    _, lines, runs = timed_lines(command, child_env(), out / "km.log")
    cold, warm = [t for t in lines if t < runs[1]], [t for t in lines if t > runs[1]]
    return Timing(cold[0], gaps(cold, skip), warm[0] - runs[1])


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
        "dataset": "km_sft", "dataset_dir": str(out), "template": "qwen" if is_qwen(model) else "chatml",
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
    command = [python, "-c", "import sys; from llamafactory.cli import main; sys.argv[1:] = ['train', sys.argv[1]]; main()",
               str(out / "train.yaml")]  # fmt: skip
    _, lines, _ = timed_lines(command, child_env(stub), out / "lf.log")
    return Timing(lines[0], gaps(lines, skip))


def torchaudio_stub(python: str, out: Path) -> str | None:
    """LLaMA-Factory imports torchaudio, and no torchaudio wheel loads next to CPU torch: an empty stand-in,
    on this run's PYTHONPATH only, when the environment's own torchaudio does not import."""
    if subprocess.run([python, "-c", "import torchaudio"], capture_output=True).returncode == 0:
        return None
    (out / "stub" / "torchaudio").mkdir(parents=True, exist_ok=True)
    (out / "stub" / "torchaudio" / "__init__.py").write_text("")
    return str(out / "stub")


def run_swift(python: str, model: Path, data: Path, steps: int, out: Path, skip: int) -> Timing:
    kind = (
        ["--model_type", "qwen2", "--template", "qwen"]
        if is_qwen(model)
        else ["--model_type", "llama", "--template", "chatml"]
    )
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
    command = [python, "-m", "swift.cli.sft", *kind, *flags]
    out.mkdir(parents=True, exist_ok=True)
    _, lines, _ = timed_lines(command, child_env(), out / "swift.log")
    return Timing(lines[0], gaps(lines, skip))


def table(model: str, results: dict[str, list[Timing]]) -> None:
    print(f"\n{model}: LoRA r {LORA_R} q/v, fp32, batch {BATCH} x {MAX_LENGTH} tokens, CPU (fresh process each run)")
    print(
        f"{'tool':<16}{'start-up s':>12}{'warm start s':>14}{'median s/step':>15}{'mean s/step':>13}{'vs km.sft':>11}"
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
        print(f"{tool:<16}{start:>12}{warm_text:>14}{median:>15.3f}{statistics.mean(steps):>13.3f}{ratio:>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lf-python", help="a Python whose environment has llamafactory")
    parser.add_argument("--swift-python", help="a Python whose environment has ms-swift")
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2, folders")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", type=int, default=3, help="first step logs left out of s/step")
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
    runners = {"km.sft": lambda py, *a: run_km(*a), "LLaMA-Factory": run_llamafactory, "ms-swift": run_swift}

    from kernel_magics.config import settings
    from kernel_magics.testing import tiny_dataset

    work = Path(tempfile.mkdtemp(prefix="km-anchors-"))
    settings.cache_dir = str(work / "cache")
    data = tiny_dataset("sft")
    for name in options.models.split(","):
        try:
            model = same_template(model_folder(name.strip(), work).resolve(), work)
        except (SystemExit, Exception) as exc:  # noqa: BLE001 - one line, then the other models
            print(f"model {name}: unavailable ({str(exc)[:200]}); left out")
            continue
        results: dict[str, list[Timing]] = {tool: [] for tool in tools}
        for i in range(options.rounds):
            order = list(tools) if i % 2 == 0 else list(reversed(tools))
            for tool in order:
                out = work / f"{model.name}-{tool}-{i}"
                results[tool].append(runners[tool](tools[tool], model, data, options.steps, out, options.skip))
                t = results[tool][-1]
                print(f"{model.name} round {i + 1} {tool}: start-up {t.startup_s:.1f} s, "
                      f"median {statistics.median(t.step_s):.3f} s/step", flush=True)  # fmt: skip
        table(model.name, results)


if __name__ == "__main__":
    main()
