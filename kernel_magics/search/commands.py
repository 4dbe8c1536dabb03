"""``%swift search`` / ``python -m kernel_magics search``: the argument spec of ``km.search``.

Kept light (no torch, no pandas): the CLI and the magic import it to build their parsers.
"""

from __future__ import annotations

import re

from kernel_magics.argspec import Arg, Command, csv_list

MODES = ("hybrid", "bm25", "dense")


def billions(value: object) -> float:
    """``"3"`` / ``"3B"`` / ``"500M"`` -> billions of parameters."""
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bm]?)\s*", str(value).lower())
    if not match:
        raise ValueError(f"expected a size in billions like 3, 1.5B or 500M, got {value!r}")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "m" else number


def token_count(value: object) -> int:
    """``"100000"`` / ``"100k"`` / ``"1M"`` -> tokens."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([km]?)\s*", str(value).lower())
    if not match:
        raise ValueError(f"expected a number of tokens like 32768, 100k or 1M, got {value!r}")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)]
    return int(float(match.group(1)) * scale)


COMMANDS = [
    Command(
        name="search",
        help="find models by describing them in English or Chinese (filters: size, inputs, languages, license...)",
        target="kernel_magics.search.api:search",
        notebook="kernel_magics.widgets.search_panel:show",
        terminal="kernel_magics.search.api:print_results",
        args=(
            Arg("query", positional=True, nargs="*", help="what you want, e.g. 'small chinese chat model under 3B'"),
            Arg("k", type=int, default=10, short="-k", help="how many results"),
            Arg("min_params_b", type=billions, help="at least this many billion parameters (e.g. 1.5 or 500M)"),
            Arg("max_params_b", type=billions, help="at most this many billion parameters"),
            Arg("min_active_params_b", type=billions, help="mixture of experts with at least this many active (B)"),
            Arg("max_active_params_b", type=billions, help="mixture of experts with at most this many active (B)"),
            Arg("modalities", type=csv_list, help="inputs it must accept: text,image,video,audio"),
            Arg("tasks", type=csv_list, help="tasks it must do, e.g. chat,code,vqa,embedding,asr"),
            Arg("languages", type=csv_list, help="languages it must support (ISO codes or names), e.g. zh,en"),
            Arg("license", type=csv_list, help="allowed licenses, e.g. apache-2.0,mit, or 'commercial' / 'permissive'"),
            Arg("formats", type=csv_list, help="builds it must have (any): gguf,awq,gptq,bnb-4bit,mlx or 'quantized'"),
            Arg("min_context", type=token_count, help="minimum context length in tokens (e.g. 100000 or 128k)"),
            Arg("family", type=csv_list, help="model families, prefix match (e.g. qwen, llama)"),
            Arg("include_local", flag=True, default=True, help="also list models found in the local hub cache"),
            Arg("local_dirs", type=csv_list, help="more folders holding local models"),
            Arg("mode", choices=MODES, default="hybrid", help="ranking: hybrid, bm25 alone or dense alone"),
            Arg("embedder", help="sentence-transformers model for dense retrieval ('none' turns it off)"),
            Arg("catalog", help="another catalog .jsonl file"),
            Arg("refresh", flag=True, default=False, help="first pull new model cards from the Hub (when online)"),
            Arg("limit", type=int, help="with --refresh: how many models to pull per task (default 50)"),
        ),
    ),
]
