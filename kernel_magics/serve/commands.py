"""Subcommands of serving: ``serve``, ``chat``, ``stop`` (light module: no heavy imports)."""

from kernel_magics.argspec import Arg, Command, csv_list, key_value

from .engines import BACKENDS

COMMANDS = [
    Command(
        name="serve",
        help="start an OpenAI-compatible server (vLLM or transformers) for a model and its LoRA adapters",
        target="kernel_magics.serve.api:serve",
        terminal="kernel_magics.serve.api:serve_forever",
        args=(
            Arg(
                "model", short="-m", help="model: 'tiny', a local folder or a hub id [default: settings.default_model]"
            ),
            Arg(
                "adapters",
                type=key_value,
                multiple=True,
                option="--adapter",
                help="LoRA adapter served as its own model name, unmerged: NAME=PATH (repeatable)",
            ),
            Arg("backend", default="auto", choices=BACKENDS, help="inference engine"),
            Arg("host", help="address to bind [default: 127.0.0.1]; anything else requires --api-key"),
            Arg("port", type=int, help="port; busy -> error (leave it out to take the next free one from 8000)"),
            Arg("api_key", help="key every request must send as 'Authorization: Bearer KEY'"),
            Arg("name", help="server name for %swift stop NAME [default: the model name]"),
            Arg("device", help="auto, cpu, cuda, cuda:N or mps [default: settings.device]"),
            Arg("max_batch_size", type=int, default=32, help="requests generated together in one batch"),
            Arg("max_model_len", type=int, help="context length (prompt + reply) in tokens"),
            Arg("trust_remote_code", flag=True, help="allow model code from the model's repository"),
            Arg(
                "engine_args",
                type=key_value,
                multiple=True,
                option="--engine-arg",
                help="extra vLLM flag as KEY=VALUE, e.g. gpu_memory_utilization=0.5 (repeatable)",
            ),
            Arg(
                "allowed_local_media_path",
                help="vision-language models: image parts may name local files inside this folder",
            ),
            Arg(
                "stream_interval_ms",
                type=float,
                default=10.0,
                help="transformers engine: tokens of a stream closer than this go out as one chunk (0 = per token)",
            ),
            Arg("served_model_name", help="the model id clients send [default: the folder name or hub id]"),
            Arg(
                "tool_call_parser",
                help="tool-call format in replies: hermes or llama3_json [default: from the template]",
            ),
            Arg("max_body_mb", type=float, default=32.0, help="transformers engine: largest request body (413 beyond)"),
            Arg(
                "max_waiting",
                type=int,
                default=256,
                help="transformers engine: queued choices (prompts x n) before 503 + Retry-After",
            ),
            Arg(
                "max_choices",
                type=int,
                default=128,
                help="transformers engine: most choices (prompts x n) one request may ask for (400 beyond)",
            ),
            Arg("request_timeout_s", type=float, help="transformers engine: end a request after this long (504)"),
            Arg("default_max_tokens", type=int, default=2048, help="reply length of chat requests that name none"),
            Arg(
                "allowed_hosts",
                type=csv_list,
                help="Host names a server without --api-key answers [default: localhost,127.0.0.1,[::1]; * = any]",
            ),
            Arg("wait", flag=True, default=True, help="return once the server answers"),
        ),
    ),
    Command(
        name="chat",
        help="chat panel against the running server (or --url); --compare base,tuned answers side by side",
        target="kernel_magics.serve.api:chat",
        notebook="kernel_magics.widgets.chat:show",
        args=(
            Arg("url", help="OpenAI-compatible base URL [default: the latest server of this kernel]"),
            Arg("model", short="-m", help="model to chat with [default: the server's first model]"),
            Arg("compare", type=csv_list, help="two or more models side by side, e.g. base,tuned"),
            Arg("api_key", help="API key of the server"),
            Arg("system", help="system prompt"),
            Arg("temperature", type=float, default=0.7, help="sampling temperature (0 = greedy)"),
            Arg("max_tokens", type=int, default=256, help="longest reply in tokens"),
        ),
    ),
    Command(
        name="stop",
        help="stop the servers started from this kernel (or one by name; --all stops training runs too)",
        target="kernel_magics.serve.api:stop",
        args=(
            Arg("name", positional=True, help="server name (default: every server)"),
            Arg("all", flag=True, help="stop every background job of this kernel, training runs included"),
        ),
    ),
]
