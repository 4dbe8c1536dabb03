"""Subcommands of merge, export and evaluation: ``merge``, ``export``, ``eval``, ``compare``.

A light module (no torch at import); the functions live in :mod:`kernel_magics.export.api`.
"""

from kernel_magics.argspec import Arg, Command, csv_list

_DTYPES = ("float32", "bfloat16", "float16", "fp32", "bf16", "fp16")

COMMANDS = [
    Command(
        name="merge",
        help="merge a LoRA adapter into its base model: one safetensors folder any server loads",
        target="kernel_magics.export.api:merge",
        args=(
            Arg("adapter", positional=True, help="adapter folder (runs/<id>/adapter)"),
            Arg("base", short="-m", help="base model [default: the base recorded in the adapter]"),
            Arg("out_dir", short="-o", help="output folder [default: runs/<id>/merged beside the adapter]"),
            Arg("dtype", choices=_DTYPES, help="dtype of the saved weights [default: the base's]"),
        ),
    ),
    Command(
        name="export",
        help="export a model as GGUF (llama.cpp, Ollama), bitsandbytes 4-bit, or GPTQ / AWQ (CUDA)",
        target="kernel_magics.export.api:export",
        args=(
            Arg("model_dir", positional=True, help="model folder, 'tiny', a merged run or an adapter folder"),
            Arg("format", short="-f", default="gguf", choices=("gguf", "bnb-4bit", "gptq", "awq"), help="format"),
            Arg("out_dir", short="-o", help="output folder [default: <workspace>/exports/<model>-<format>]"),
            Arg("outtype", default="f16", choices=("f32", "f16", "bf16", "q8_0", "q4_0"), help="GGUF tensor type"),
            Arg("adapter", help="LoRA adapter merged into the model before exporting"),
            Arg("dataset", help="calibration data for GPTQ / AWQ (.jsonl, your training data)"),
            Arg("bits", type=int, default=4, help="GPTQ / AWQ bits (4 or 8)"),
            Arg("group_size", type=int, default=128, help="GPTQ / AWQ group size"),
            Arg("calib_samples", type=int, default=128, help="GPTQ / AWQ calibration rows"),
            Arg("quant_type", default="nf4", choices=("nf4", "fp4"), help="bnb-4bit quantization type"),
        ),
    ),
    Command(
        name="eval",
        help="perplexity, exact match and preference accuracy of one or more models on a dataset",
        target="kernel_magics.export.api:evaluate",
        aliases=("evaluate",),
        args=(
            Arg(
                "model", positional=True, help="model, adapter folder, or LABEL=MODEL [default: settings.default_model]"
            ),
            Arg("dataset", short="-d", help="evaluation rows (.jsonl / .json)"),
            Arg(
                "metrics",
                type=csv_list,
                default=["perplexity"],
                help="perplexity, exact_match, contains, preference_accuracy, lm_eval:TASK",
            ),
            Arg("adapter", help="LoRA adapter applied to the model"),
            Arg("holdout", type=float, help="score only this held-out fraction of the rows, e.g. 0.1"),
            Arg("limit", type=int, help="score at most this many rows"),
            Arg("seed", type=int, default=42, help="seed of the held-out split"),
            Arg("max_new_tokens", type=int, default=64, help="longest generated reply (exact_match, contains)"),
            Arg("batch_size", type=int, default=8, help="rows per forward pass"),
            Arg("max_length", type=int, default=2048, help="longest scored sequence in tokens"),
            Arg("chat_template", flag=True, help="wrap prompts in the chat template [default: when there is one]"),
        ),
    ),
    Command(
        name="compare",
        help="the same prompts through several models (base, SFT, DPO...), answers side by side",
        target="kernel_magics.export.api:compare",
        notebook="kernel_magics.widgets.compare:show",
        args=(
            Arg("models", type=csv_list, help="models, comma-separated: tiny,runs/<id>/adapter or LABEL=MODEL"),
            Arg("prompts", multiple=True, option="--prompt", help="a prompt (repeatable)"),
            Arg("max_new_tokens", type=int, default=64, help="longest reply in tokens"),
            Arg("system", help="system prompt added to every prompt"),
            Arg("chat_template", flag=True, help="wrap prompts in the chat template [default: when there is one]"),
            Arg("batch_size", type=int, default=8, help="prompts generated together"),
        ),
    ),
]
