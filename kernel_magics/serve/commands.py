"""Subcommands of serving: ``serve``, ``chat``, ``stop`` (light module: no heavy imports).

Each flag is a keyword of its function in :mod:`kernel_magics.serve.api` (name, type and default from the
signature, :func:`kernel_magics.signatures.command_from`); the rows say only what a signature cannot.
"""

from kernel_magics.argspec import key_value
from kernel_magics.signatures import about, command_from

from .engines import BACKENDS, names_where

_HF = f"{names_where(lambda e: e.in_process)} engine: "  # limits our app applies (engines with their own server have theirs)

COMMANDS = [
    command_from(
        "serve",
        f"start an OpenAI-compatible server ({' or '.join(BACKENDS[1:])}) for a model and its LoRA adapters",
        "kernel_magics.serve.api:serve",
        {
            "model": about("model: 'tiny', a local folder or a hub id", short="-m", default_help="settings.default_model"),
            "adapters": about(
                "LoRA adapter served as its own model name, unmerged: NAME=PATH (repeatable)",
                type=key_value,
                multiple=True,
                option="--adapter",
            ),
            "backend": about("inference engine", choices=BACKENDS),
            "host": about("address to bind; anything else requires --api-key", default_help="127.0.0.1"),
            "port": about("port; busy -> error (leave it out to take the next free one from 8000)"),
            "api_key": about("key every request must send as 'Authorization: Bearer KEY'"),
            "name": about("server name for %swift stop NAME", default_help="the model name"),
            "device": about("auto, cpu, cuda, cuda:N or mps", default_help="settings.device"),
            "max_batch_size": about("requests generated together in one batch"),
            "max_model_len": about("context length (prompt + reply) in tokens"),
            "trust_remote_code": about("allow model code from the model's repository"),
            "engine_args": about(
                f"extra engine flag as KEY=VALUE for {names_where(lambda e: e.takes_engine_args)}, "
                "e.g. gpu_memory_utilization=0.5 (repeatable)",
                type=key_value,
                multiple=True,
                option="--engine-arg",
            ),
            "allowed_local_media_path": about(
                "vision-language models: image parts may name local files inside this folder"
            ),
            "stream_interval_ms": about(_HF + "tokens of a stream closer than this go out as one chunk (0 = per token)"),
            "served_model_name": about("the model id clients send", default_help="the folder name or hub id"),
            "tool_call_parser": about("tool-call format in replies: hermes or llama3_json", default_help="from the template"),
            "max_body_mb": about(_HF + "largest request body (413 beyond)"),
            "max_waiting": about(_HF + "queued choices (prompts x n) before 503 + Retry-After"),
            "max_choices": about(_HF + "most choices (prompts x n) one request may ask for (400 beyond)"),
            "request_timeout_s": about(_HF + "end a request after this long (504)"),
            "default_max_tokens": about("reply length of chat requests that name none"),
            "allowed_hosts": about(
                "Host names a server without --api-key answers (* = any)", default_help="localhost,127.0.0.1,[::1]"
            ),
            "wait": about("return once the server answers"),
        },
        terminal="kernel_magics.serve.api:serve_forever",
    ),
    command_from(
        "chat",
        "chat panel against the running server (or --url); --compare base,tuned answers side by side",
        "kernel_magics.serve.api:chat",
        {
            "url": about("OpenAI-compatible base URL", default_help="the latest server of this kernel"),
            "model": about("model to chat with", short="-m", default_help="the server's first model"),
            "compare": about("two or more models side by side, e.g. base,tuned"),
            "api_key": about("API key of the server"),
            "system": about("system prompt"),
            "temperature": about("sampling temperature (0 = greedy)"),
            "max_tokens": about("longest reply in tokens"),
        },
        notebook="kernel_magics.widgets.chat:show",
    ),
    command_from(
        "stop",
        "stop the servers started from this kernel (or one by name; --all stops training runs too)",
        "kernel_magics.serve.api:stop",
        {
            "name": about("server name", positional=True, default_help="every server"),
            "all": about("stop every background job of this kernel, training runs included"),
        },
    ),
]
