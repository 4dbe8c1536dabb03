"""Runs on several processes or machines, on existing engines only.

``torchrun`` (``torch.distributed.run``) starts the process group; transformers' ``Trainer`` (through
accelerate) does DDP, PyTorch FSDP or DeepSpeed ZeRO from its ``TrainingArguments``. The kernel never
trains such a run itself and never touches CUDA for it: it starts the group in its own session (so one
signal reaches every rank), tails what rank 0 writes into the run folder (``logging.jsonl``,
``events.jsonl``) and turns a stop request into a file that every rank checks at each step boundary
through one all-reduce, so they all write the same checkpoint and exit together.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import SwiftConfigError, SwiftDeviceError, did_you_mean

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3", "zero3-offload")
WHERE = ("worker", "kernel")  # where a run trains: its own process, or a thread of the caller's
STOP_FILE = "stop-requested"
EVENTS_FILE = "events.jsonl"
FINISHED_FILE = "group-finished.json"  # rank 0, once the adapter is published: the run's outcome is decided
# top-level keys of a DeepSpeed config (deepspeed.runtime.config); anything else is a typo
DEEPSPEED_KEYS = frozenset(
    """train_batch_size train_micro_batch_size_per_gpu gradient_accumulation_steps optimizer scheduler fp16 bf16
    amp gradient_clipping zero_optimization zero_allow_untested_optimizer zero_force_ds_cpu_optimizer
    activation_checkpointing flops_profiler wall_clock_breakdown memory_breakdown steps_per_print dump_state
    communication_data_type prescale_gradients gradient_predivide_factor sparse_gradients tensorboard wandb
    csv_monitor comet aio data_efficiency curriculum_learning checkpoint elasticity compression_training
    autotuning pipeline data_types seq_parallel_communication_data_type torch_autocast nebula
    load_universal_checkpoint use_data_before_expert_parallelism""".split()
)


@dataclass
class DistributedArguments:
    """How many processes train a run and how they share the model (stored in the run's config.json)."""

    num_processes: int = field(default=1, metadata={"help": "training processes on this machine, one per GPU"})
    nnodes: int = field(default=1, metadata={"help": "machines taking part (node 0 prints the others' command)"})
    node_rank: int = field(default=0, metadata={"help": "this machine's index among --nnodes"})
    master_addr: str | None = field(default=None, metadata={"help": "address of node 0 (needed with --nnodes > 1)"})
    master_port: int | None = field(
        default=None, metadata={"help": "rendezvous port on node 0", "default_help": "a free one"}
    )
    strategy: str = field(
        default="ddp",
        metadata={
            "help": "how processes share the model: ddp, fsdp, zero2, zero3, zero3-offload",
            "choices": STRATEGIES,
        },
    )
    deepspeed: str | None = field(
        default=None, metadata={"help": "a DeepSpeed JSON config file (used instead of the strategy's preset)"}
    )
    where: str = field(
        default="worker",
        metadata={
            "help": "worker: a process of its own that outlives the kernel and gives all its memory back; "
            "kernel: a thread of this process (for a debugger; ends with the kernel)",
            "choices": WHERE,
        },
    )

    @property
    def world_size(self) -> int:
        return int(self.num_processes) * int(self.nnodes)

    def check_distributed(self) -> None:
        """One-line :class:`SwiftConfigError` for options that cannot work, before anything starts."""
        for name, low in (("num_processes", 1), ("nnodes", 1), ("node_rank", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SwiftConfigError(
                    f"{name} must be an integer >= {low}, got {value!r}; fix --{name.replace('_', '-')}"
                )
        if self.node_rank >= self.nnodes:
            raise SwiftConfigError(
                f"node_rank {self.node_rank} must be below nnodes {self.nnodes} (0 .. {self.nnodes - 1})"
            )
        if self.nnodes > 1 and not self.master_addr:
            raise SwiftConfigError(
                "nnodes > 1 needs --master-addr: the address of node 0 that the other nodes can reach"
            )
        if self.master_addr:
            check_host(self.master_addr)
        if self.master_port is not None and not 1 <= int(self.master_port) <= 65535:
            raise SwiftConfigError(f"master_port must be in 1..65535, got {self.master_port}")
        if self.strategy not in STRATEGIES:
            hint = did_you_mean(str(self.strategy), STRATEGIES)
            raise SwiftConfigError(f"strategy '{self.strategy}' is not one of {', '.join(STRATEGIES)}{hint}")
        if self.deepspeed is not None:
            read_deepspeed_config(self.deepspeed)
        if self.where not in WHERE:
            raise SwiftConfigError(f"where must be worker or kernel, got {str(self.where)[:40]!r}; fix --where")


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_IP_TEXT = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")  # an IPv6 scope id is a plain interface name


def check_host(value: Any, name: str = "master_addr") -> str:
    """``value`` when it is an IP address or a host name (RFC 1123 labels), else a one-line error."""
    text = value if isinstance(value, str) else ""
    try:
        if _IP_TEXT.match(text) and ipaddress.ip_address(text):
            return text
    except ValueError:
        pass
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if 0 < len(text) <= 253 and all(_HOST_LABEL.match(label) for label in labels):
        return text
    raise SwiftConfigError(
        f"{name} must be a host name or an IP address of node 0, got {repr(str(value)[:40])[:70]}; "
        f"fix --{name.replace('_', '-')}"
    )


def is_group(arguments: dict[str, Any]) -> bool:
    """Does a run with these stored arguments train in a process group (rather than one process)?"""
    world = int(arguments.get("num_processes") or 1) * int(arguments.get("nnodes") or 1)
    return world > 1 or arguments.get("strategy", "ddp") != "ddp" or bool(arguments.get("deepspeed"))


def read_deepspeed_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The DeepSpeed JSON at ``path``, checked: readable, an object, only known top-level keys."""
    source = Path(path).expanduser()
    try:
        config = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SwiftConfigError(f"cannot read the DeepSpeed config {source}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SwiftConfigError(f"DeepSpeed config {source} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise SwiftConfigError(f"DeepSpeed config {source} must be a JSON object, got {type(config).__name__}")
    for key in config:
        if key not in DEEPSPEED_KEYS:
            hint = did_you_mean(key, DEEPSPEED_KEYS)
            raise SwiftConfigError(
                f"DeepSpeed config {source}: unknown key '{key}'{hint}; see deepspeed.ai/docs/config-json"
            )
    stage = (config.get("zero_optimization") or {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise SwiftConfigError(f"DeepSpeed config {source}: zero_optimization.stage must be 0-3, got {stage!r}")
    return config


def deepspeed_preset(strategy: str) -> dict[str, Any]:
    """The DeepSpeed config of a ``zero*`` strategy ("auto" values are filled in by transformers)."""
    zero: dict[str, Any] = {
        "stage": 3 if strategy.startswith("zero3") else 2,
        "overlap_comm": True,
        "contiguous_gradients": True,
    }
    if strategy == "zero3-offload":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if zero["stage"] == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


# which memory components each strategy divides among the processes (the rest is per device)
SHARDED = {
    "ddp": (),
    "fsdp": ("weights", "lora params", "gradients", "optimizer states"),
    "zero2": ("gradients", "optimizer states"),
    "zero3": ("weights", "lora params", "gradients", "optimizer states"),
    "zero3-offload": ("gradients",),
}
OFFLOADED = {"zero3-offload": ("weights", "optimizer states")}  # kept in CPU memory instead


def per_device(parts: dict[str, dict[str, float]], strategy: str, processes: int) -> dict[str, dict[str, float]]:
    """The estimate's bytes per method and component, as one of ``processes`` devices holds them."""
    if strategy not in SHARDED:
        hint = did_you_mean(str(strategy), STRATEGIES)
        raise SwiftConfigError(f"strategy '{strategy}' is not one of {', '.join(STRATEGIES)}{hint}")
    if processes < 1:
        raise SwiftConfigError(f"num_processes must be >= 1, got {processes}")
    out = {}
    for method, components in parts.items():
        out[method] = {
            name: 0.0
            if name in OFFLOADED.get(strategy, ())
            else value / processes
            if name in SHARDED[strategy]
            else value
            for name, value in components.items()
        }
    return out


def probe_device(preference: str | None) -> Any:
    """The device as a fresh Python process sees it, so that the kernel creates no CUDA context for a run
    its ranks train (on a CPU-only torch, or once CUDA is up in the kernel anyway, it is asked here)."""
    import dataclasses

    import torch

    from ...device import DeviceInfo, select_device

    if torch.version.cuda is None or torch.cuda.is_initialized():
        return select_device(preference)
    code = (
        "import dataclasses, json, sys\n"
        "from kernel_magics.device import select_device\n"
        "from kernel_magics.errors import SwiftError\n"
        "try:\n    print(json.dumps(dataclasses.asdict(select_device(sys.argv[1] or None))))\n"
        "except SwiftError as exc:\n    print(json.dumps({'error': str(exc)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, preference or ""], capture_output=True, text=True,
                          env=child_environment(), timeout=300)  # fmt: skip
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SwiftDeviceError(
            f"could not describe the device in a child process: {done.stderr.strip()[-200:]}"
        ) from None
    if "error" in answer:
        raise SwiftDeviceError(answer["error"])
    return DeviceInfo(**{f.name: answer[f.name] for f in dataclasses.fields(DeviceInfo)})


def child_environment() -> dict[str, str]:
    """This environment with this checkout first on ``PYTHONPATH`` (for the processes a run starts)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # this checkout first, as in the kernel
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def kernel_stays_off_cuda(launcher: Any) -> Any:
    """Decorator of a public training function: for a run trained in processes of its own (every run but
    ``where="kernel"``), each device question inside it is answered by :func:`probe_device` (a child process
    on a CUDA build of torch), so the kernel never holds a CUDA context or device memory for it."""
    import functools

    @functools.wraps(launcher)
    def launch(*args: Any, **kwargs: Any) -> Any:
        if not is_group(kwargs) and kwargs.get("where") == "kernel":
            return launcher(*args, **kwargs)
        from ...device import probed_device

        with probed_device(probe_device(kwargs.get("device"))):
            return launcher(*args, **kwargs)

    return launch


def check_group_device(args: DistributedArguments, device_type: str) -> None:
    """Checks that need the device type: enough GPUs, a strategy this device and install can do, a free port.

    Counting GPUs goes through NVML (``torch.cuda.device_count``) and creates no CUDA context in the kernel.
    """
    if device_type == "mps" and args.world_size > 1:
        raise SwiftDeviceError("MPS trains in one process; use num_processes=1 on this Mac")
    if device_type == "cuda":
        import torch

        count = torch.cuda.device_count()
        if args.num_processes > count:
            raise SwiftDeviceError(f"num_processes {args.num_processes} is more than the {count} CUDA device(s) here")
    uses_deepspeed = args.deepspeed is not None or args.strategy.startswith("zero")
    if uses_deepspeed:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise SwiftConfigError(
                f"strategy {args.strategy} needs DeepSpeed: pip install 'kernel_magics[deepspeed]' (or pip install deepspeed)"
            )
        if device_type != "cuda":
            raise SwiftDeviceError(f"DeepSpeed ZeRO ({args.strategy}) needs CUDA devices; on {device_type} use ddp")
    if args.strategy == "fsdp" and device_type != "cuda":
        raise SwiftDeviceError(f"FSDP needs CUDA devices here (see docs/distributed.md); on {device_type} use ddp")
    if args.master_port is not None and args.node_rank == 0 and not port_is_free(int(args.master_port)):
        raise SwiftConfigError(f"master_port {args.master_port} is busy on this machine; pick another or leave it out")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def trainer_options(arguments: Any, device_type: str) -> dict[str, Any]:
    """``TrainingArguments`` keywords for the run's strategy (empty for a one-process run)."""
    if not is_group(vars(arguments) if not isinstance(arguments, dict) else arguments):
        return {}
    get = arguments.get if isinstance(arguments, dict) else lambda k, d=None: getattr(arguments, k, d)
    options: dict[str, Any] = {"ddp_backend": "gloo" if device_type == "cpu" else None}
    strategy = get("strategy", "ddp")
    if get("deepspeed"):
        options["deepspeed"] = str(Path(get("deepspeed")).expanduser())
    elif strategy.startswith("zero"):
        options["deepspeed"] = deepspeed_preset(strategy)
    elif strategy == "fsdp":
        options["fsdp"] = "full_shard auto_wrap"
        options["fsdp_config"] = {"use_orig_params": True, "sync_module_states": True}
    if strategy == "ddp":
        options["ddp_find_unused_parameters"] = False
    return {k: v for k, v in options.items() if v is not None}
