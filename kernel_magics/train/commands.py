"""Subcommands of training: one per method of :mod:`kernel_magics.train.methods.registry` (``sft``, ``dpo`` and its
ms-swift spelling ``rlhf --type``, ``grpo``), ``estimate``, ``dataset``, ``runs`` and ``export-script``.

Light module: no heavy imports. A method's flags are made from its argument dataclass
(:func:`kernel_magics.train.methods.registry.method_commands`); the others' from their function's signature
(:func:`kernel_magics.signatures.command_from`): names, types and defaults are the function's, the rows
below say only what a signature cannot.
"""

from kernel_magics.signatures import about, command_from

from ..data.vision import TEMPLATES
from .methods.registry import METHODS, method, method_commands
from .planning.estimate import METHODS as ESTIMATE_METHODS
from .runtime.distributed import STRATEGIES
from .script import SCRIPT_KINDS

PREFERENCE_LOSSES = method("dpo").kinds  # kernel_magics.train.methods.dpo.LOSSES
_VLM = "vision-language models: "

COMMANDS = [
    *(command for entry in METHODS for command in method_commands(entry)),
    command_from(
        "estimate",
        "training memory for each method from config.json alone, and whether it fits this device",
        "kernel_magics.train.planning.estimate:estimate",
        {
            "model": about("'tiny', a local folder or a hub id whose config is cached", positional=True),
            "method": about("method whose total is reported", choices=ESTIMATE_METHODS),
            "max_length": about("tokens per row"),
            "batch_size": about("rows per step"),
            "lora_r": about("LoRA rank"),
            "target_modules": about("LoRA targets", default_help="all-linear"),
            "gradient_checkpointing": about("recompute activations", default_help="on for CUDA"),
            "device": about("device to check against", default_help="settings.device"),
            "dtype": about(
                "compute dtype",
                choices=("bf16", "fp16", "fp32"),
                default_help="what --dtype auto trains each method in (bf16 on GPUs and on CPUs with AMX / AVX512-BF16)",
            ),
            "image_pixels": about(_VLM + "pixels per image", default_help="448x448"),
            "images_per_row": about(_VLM + "images in each row", default_help="1"),
            "train_vision": about(_VLM + "the vision tower trains too"),
            "num_processes": about("processes (devices) sharing the run: memory per device"),
            "strategy": about("how the processes share the model", choices=STRATEGIES),
        },
    ),
    command_from(
        "dataset",
        "look at a dataset before training: rows as the trainer sees them, their images, the bad rows",
        "kernel_magics.data.preview:preview",
        {
            "dataset": about("jsonl/json/csv/parquet file, a save_to_disk folder or a hub id", positional=True),
            "template": about("image rows: how simple rows become chats", choices=TEMPLATES),
            "model": about("model whose grounding box convention to use", short="-m"),
        },
        notebook="kernel_magics.widgets.dataset_viewer:show",
        terminal="kernel_magics.data.preview:show_text",
    ),
    command_from(
        "runs",
        "list the training runs in the workspace",
        "kernel_magics.train.api:runs",
        {"workspace": about("workspace folder", default_help="settings.workspace")},
    ),
    command_from(
        "attach",
        "watch a run that trains in its own process (started before a kernel restart, or elsewhere): its "
        "dashboard, stop and wait",
        "kernel_magics.train.api:attach",
        {"run": about("run id (see %swift runs) or run folder", positional=True)},
        notebook="kernel_magics.widgets.dashboard:show",
        terminal="kernel_magics.train.api:watch",
    ),
    command_from(
        "export-script",
        "write a standalone script that reproduces a run (environment, model, data, train, merge, serve)",
        "kernel_magics.train.api:export_script",
        {
            "run": about("run id (see %swift runs) or run folder", positional=True),
            "path": about("script path", short="-o", default_help="<run folder>/reproduce-<run-id>.sh"),
            "kind": about("shell (CLI) or python (API)", choices=SCRIPT_KINDS),
            "launcher": about(
                "a cluster script instead: torchrun, accelerate or slurm (sbatch with srun torchrun)",
                choices=("torchrun", "accelerate", "slurm"),
            ),
        },
    ),
]
