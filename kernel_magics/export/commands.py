"""Subcommands of merge, export and evaluation: ``merge``, ``export``, ``eval``, ``compare``.

A light module (no torch at import); the functions live in :mod:`kernel_magics.export.api`. Each flag is a
keyword of its function (name, type and default from the signature,
:func:`kernel_magics.signatures.command_from`); the rows say only what a signature cannot.
"""

from kernel_magics.argspec import csv_list
from kernel_magics.signatures import about, command_from

_DTYPES = ("float32", "bfloat16", "float16", "fp32", "bf16", "fp16")
_QUANTIZED = "GPTQ / AWQ "
_TEMPLATE = about("wrap prompts in the chat template", default_help="when there is one")

COMMANDS = [
    command_from(
        "merge",
        "merge a LoRA adapter into its base model: one safetensors folder any server loads",
        "kernel_magics.export.merge:merge",
        {
            "adapter": about("adapter folder (runs/<id>/adapter)", positional=True),
            "base": about("base model", short="-m", default_help="the base recorded in the adapter"),
            "out_dir": about("output folder", short="-o", default_help="runs/<id>/merged beside the adapter"),
            "dtype": about("dtype of the saved weights", choices=_DTYPES, default_help="the base's"),
        },
    ),
    command_from(
        "export",
        "export a model as GGUF (llama.cpp, Ollama), bitsandbytes 4-bit, or GPTQ / AWQ (CUDA)",
        "kernel_magics.export.api:export",
        {
            "model_dir": about("model folder, 'tiny', a merged run or an adapter folder", positional=True),
            "format": about("format", short="-f", choices=("gguf", "bnb-4bit", "gptq", "awq")),
            "out_dir": about("output folder", short="-o", default_help="<workspace>/exports/<model>-<format>"),
            "outtype": about("GGUF tensor type", choices=("f32", "f16", "bf16", "q8_0", "q4_0")),
            "adapter": about("LoRA adapter merged into the model before exporting"),
            "dataset": about("calibration data for GPTQ / AWQ (.jsonl, your training data)"),
            "bits": about(_QUANTIZED + "bits (4 or 8)"),
            "group_size": about(_QUANTIZED + "group size"),
            "calib_samples": about(_QUANTIZED + "calibration rows"),
            "quant_type": about("bnb-4bit quantization type", choices=("nf4", "fp4")),
        },
    ),
    command_from(
        "eval",
        "perplexity, exact match, preference accuracy on a dataset, or lm-eval benchmarks (--tasks)",
        "kernel_magics.export.evaluate:evaluate",
        {
            "model": about(
                "model, adapter folder, LABEL=MODEL or a server URL",
                positional=True,
                default_help="settings.default_model",
            ),
            "dataset": about("evaluation rows (.jsonl / .json)", short="-d"),
            "metrics": about("perplexity, exact_match, contains, preference_accuracy, lm_eval:TASK"),
            "adapter": about("LoRA adapter applied to the model"),
            "holdout": about("score only this held-out fraction of the rows, e.g. 0.1"),
            "limit": about("score at most this many rows (questions per task with --tasks)"),
            "seed": about("seed of the held-out split (of lm-eval with --tasks)"),
            "max_new_tokens": about("longest generated reply (exact_match, contains)"),
            "batch_size": about("rows per forward pass"),
            "max_length": about("longest scored sequence in tokens"),
            "chat_template": _TEMPLATE,
            "tasks": about("lm-eval tasks: names (km_general_en,arc_easy), task YAMLs or folders"),
            "num_fewshot": about("few-shot examples per question", default_help="each task's own"),
            "served_model": about("the served model to benchmark when MODEL is a server URL"),
            "tokenizer": about("tokenizer folder of the served model", default_help="its name resolved locally"),
        },
        aliases=("evaluate",),
    ),
    command_from(
        "compare",
        "the same prompts through several models (base, SFT, DPO...), answers side by side",
        "kernel_magics.export.evaluate:compare",
        {
            "models": about("models, comma-separated: tiny,runs/<id>/adapter or LABEL=MODEL", type=csv_list),
            "prompts": about("a prompt (repeatable)", type=str, multiple=True, option="--prompt"),
            "max_new_tokens": about("longest reply in tokens"),
            "system": about("system prompt added to every prompt"),
            "chat_template": _TEMPLATE,
            "batch_size": about("prompts generated together"),
        },
        notebook="kernel_magics.widgets.compare:show",
    ),
]
