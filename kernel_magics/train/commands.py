"""Subcommands of training: one per method of :mod:`kernel_magics.train.methods` (``sft``, ``dpo`` and its
ms-swift spelling ``rlhf --type``), ``estimate``, ``runs`` and ``export-script``.

Light module: no heavy imports. A method's flags are made from its argument dataclass
(:func:`kernel_magics.train.methods.method_commands`), so they are the keyword names of its public function.
"""

import inspect

from kernel_magics.argspec import Arg, Command, csv_list

from ..data.vision import TEMPLATES
from .estimate import METHODS as ESTIMATE_METHODS
from .estimate import estimate
from .methods import METHODS, method, method_commands
from .script import SCRIPT_KINDS

# estimate()'s own defaults (a plain function, not a method): read from its signature
_ESTIMATE = {name: p.default for name, p in inspect.signature(estimate).parameters.items()}

PREFERENCE_LOSSES = method("dpo").kinds  # kernel_magics.train.dpo.LOSSES

COMMANDS = [
    *(command for entry in METHODS for command in method_commands(entry)),
    Command(
        name="estimate",
        help="training memory for each method from config.json alone, and whether it fits this device",
        target="kernel_magics.train.estimate:estimate",
        args=(
            Arg("model", positional=True, help="'tiny', a local folder or a hub id whose config is cached"),
            Arg("method", default=_ESTIMATE["method"], choices=ESTIMATE_METHODS, help="method whose total is reported"),
            Arg("max_length", type=int, default=_ESTIMATE["max_length"], help="tokens per row"),
            Arg("batch_size", type=int, default=_ESTIMATE["batch_size"], help="rows per step"),
            Arg("lora_r", type=int, default=_ESTIMATE["lora_r"], help="LoRA rank"),
            Arg("target_modules", type=csv_list, help="LoRA targets [default: all-linear]"),
            Arg("gradient_checkpointing", flag=True, help="recompute activations [default: on for CUDA]"),
            Arg("device", help="device to check against [default: settings.device]"),
            Arg("num_processes", type=int, default=1, help="processes (devices) sharing the run: memory per device"),
            Arg(
                "strategy",
                default="ddp",
                choices=("ddp", "fsdp", "zero2", "zero3", "zero3-offload"),
                help="how the processes share the model",
            ),
            Arg(
                "dtype", choices=("bf16", "fp16", "fp32"), help="compute dtype [default: bf16 on GPUs, fp32 on the CPU]"
            ),
            Arg("image_pixels", type=int, help="vision-language models: pixels per image [default: 448x448]"),
            Arg("images_per_row", type=int, help="vision-language models: images in each row [default: 1]"),
            Arg("train_vision", flag=True, help="vision-language models: the vision tower trains too"),
        ),
    ),
    Command(
        name="dataset",
        help="look at a dataset before training: rows as the trainer sees them, their images, the bad rows",
        target="kernel_magics.data.preview:preview",
        notebook="kernel_magics.widgets.dataset_viewer:show",
        terminal="kernel_magics.data.preview:show_text",
        args=(
            Arg("dataset", positional=True, help="jsonl/json/csv/parquet file, a save_to_disk folder or a hub id"),
            Arg("template", default="auto", choices=TEMPLATES, help="image rows: how simple rows become chats"),
            Arg("model", short="-m", help="model whose grounding box convention to use"),
        ),
    ),
    Command(
        name="runs",
        help="list the training runs in the workspace",
        target="kernel_magics.train.api:runs",
        args=(Arg("workspace", help="workspace folder [default: settings.workspace]"),),
    ),
    Command(
        name="export-script",
        help="write a standalone script that reproduces a run (environment, model, data, train, merge, serve)",
        target="kernel_magics.train.api:export_script",
        args=(
            Arg("run", positional=True, help="run id (see %swift runs) or run folder"),
            Arg("path", short="-o", help="script path [default: <run folder>/reproduce-<run-id>.sh]"),
            Arg("kind", default="shell", choices=SCRIPT_KINDS, help="shell (CLI) or python (API)"),
            Arg(
                "launcher",
                choices=("torchrun", "accelerate", "slurm"),
                help="a cluster script instead: torchrun, accelerate or slurm (sbatch with srun torchrun)",
            ),
        ),
    ),
]
