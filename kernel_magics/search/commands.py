"""``%swift search`` / ``python -m kernel_magics search``: the argument spec of ``km.search``.

Kept light (no torch, no pandas): the CLI and the magic import it to build their parsers.
"""

from __future__ import annotations

from kernel_magics.signatures import about, command_from

from .refresh import DEFAULT_LIMIT
from .units import billions, token_count

MODES = ("hybrid", "bm25", "dense")  # how km.search ranks

COMMANDS = [
    command_from(
        "search",
        "find models by describing them in English or Chinese (filters: size, inputs, languages, license...)",
        "kernel_magics.search.api:search",
        {
            "query": about("what you want, e.g. 'small chinese chat model under 3B'", positional=True, nargs="*"),
            "k": about("how many results", short="-k"),
            "min_params_b": about("at least this many billion parameters (e.g. 1.5 or 500M)", type=billions),
            "max_params_b": about("at most this many billion parameters", type=billions),
            "min_active_params_b": about("mixture of experts with at least this many active (B)", type=billions),
            "max_active_params_b": about("mixture of experts with at most this many active (B)", type=billions),
            "modalities": about("inputs it must accept: text,image,video,audio"),
            "tasks": about("tasks it must do, e.g. chat,code,vqa,embedding,asr"),
            "languages": about("languages it must support (ISO codes or names), e.g. zh,en"),
            "license": about("allowed licenses, e.g. apache-2.0,mit, or 'commercial' / 'permissive'"),
            "formats": about("builds it must have (any): gguf,awq,gptq,bnb-4bit,mlx or 'quantized'"),
            "min_context": about("minimum context length in tokens (e.g. 100000 or 128k)", type=token_count),
            "family": about("model families, prefix match (e.g. qwen, llama)"),
            "include_local": about("also list models found in the local hub cache"),
            "local_dirs": about("more folders holding local models"),
            "mode": about("ranking: hybrid, bm25 alone or dense alone", choices=MODES),
            "embedder": about("sentence-transformers model for dense retrieval ('none' turns it off)"),
            "catalog": about("another catalog .jsonl file"),
            "refresh": about("first pull new model cards from the Hub (when online)"),
            "limit": about("with --refresh: how many models to pull per task", default_help=str(DEFAULT_LIMIT)),
        },
        notebook="kernel_magics.widgets.search_panel:show",
        terminal="kernel_magics.search.api:print_results",
    ),
]
