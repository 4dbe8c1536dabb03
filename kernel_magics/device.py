"""Which device the kernel trains and serves on, and how much memory it has.

The choice follows ``settings.device`` ("auto" picks CUDA, then Apple MPS, then the CPU) and always
says what it chose and why, so nothing silently assumes CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from .config import settings
from .errors import SwiftDeviceError

GB = 1024**3


@dataclass(frozen=True)
class DeviceInfo:
    """The chosen device: ``type`` is "cuda", "mps" or "cpu"; memory in GiB."""

    type: str
    index: int | None
    name: str
    memory_total_gb: float
    memory_free_gb: float
    bf16: bool
    reason: str

    @property
    def torch_device(self) -> str:
        return f"{self.type}:{self.index}" if self.type == "cuda" and self.index is not None else self.type


def host_memory_gb() -> tuple[float, float]:
    """(total, available) system memory in GiB, read without psutil."""
    total = available = 0.0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if ":" in line}
        total = info.get("MemTotal", 0) / GB
        available = info.get("MemAvailable", info.get("MemFree", 0)) / GB
    except OSError:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / GB
        except (ValueError, OSError, AttributeError):
            pass
    return round(total, 2), round(available, 2)


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of /proc/cpuinfo (None where there is no such file or line)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


# /proc/cpuinfo flags of the CPU features that compute bf16 matmuls natively, and their names for the plan line
NATIVE_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where there is no such file, e.g. macOS)."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_native_bf16(flags: Iterable[str] | None = None) -> str | None:
    """The feature with which this CPU (or one with ``flags``) computes bf16 matmuls natively ("AMX-BF16",
    "AVX512-BF16"), or None: bf16 is then emulated and slower than fp32."""
    have = set(cpu_flags() if flags is None else flags)
    return next((name for flag, name in NATIVE_BF16_FLAGS.items() if flag in have), None)


def cpu_name() -> str:
    name = _cpuinfo("model name")
    if name is None:
        import platform

        name = platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} cores)"


_probed: ContextVar[DeviceInfo | None] = ContextVar("kernel_magics_probed_device", default=None)


@contextmanager
def probed_device(info: DeviceInfo | None) -> Iterator[None]:
    """Inside the block, :func:`select_device` answers ``info`` (a device described by another process)."""
    token = _probed.set(info)
    try:
        yield
    finally:
        _probed.reset(token)


def select_device(preference: str | None = None) -> DeviceInfo:
    """Pick the device for ``preference`` ("auto", "cpu", "cuda", "cuda:N", "mps")."""
    probed = _probed.get()
    if probed is not None:
        return probed
    pref = (preference or settings.device or "auto").strip().lower()
    try:
        import torch
    except ImportError:
        if pref not in ("auto", "cpu"):
            raise SwiftDeviceError(
                f"device '{pref}' needs PyTorch, which is not installed; install kernel_magics[train]"
            ) from None
        return _cpu("PyTorch is not installed, so only the CPU can be described")

    if pref == "auto":
        if torch.cuda.is_available():
            return _cuda(torch, torch.cuda.current_device(), "CUDA is available")
        if _mps_available(torch):
            return _mps(torch, "Apple MPS is available and CUDA is not")
        return _cpu("no CUDA or MPS device was found")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SwiftDeviceError("device 'cuda' was asked for but CUDA is not available; use device='auto'")
        index = int(pref.split(":")[1]) if ":" in pref else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise SwiftDeviceError(f"device '{pref}' does not exist: {torch.cuda.device_count()} CUDA device(s)")
        return _cuda(torch, index, "asked for by the device setting")
    if pref == "mps":
        if not _mps_available(torch):
            raise SwiftDeviceError("device 'mps' was asked for but Apple MPS is not available; use device='auto'")
        return _mps(torch, "asked for by the device setting")
    if pref == "cpu":
        return _cpu("asked for by the device setting")
    raise SwiftDeviceError(f"unknown device '{pref}'; use auto, cpu, cuda, cuda:N or mps")


def _mps_available(torch) -> bool:  # noqa: ANN001
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _cuda(torch, index: int, reason: str) -> DeviceInfo:  # noqa: ANN001
    free, total = torch.cuda.mem_get_info(index)
    return DeviceInfo(
        type="cuda",
        index=index,
        name=torch.cuda.get_device_name(index),
        memory_total_gb=round(total / GB, 2),
        memory_free_gb=round(free / GB, 2),
        bf16=bool(torch.cuda.is_bf16_supported()),
        reason=reason,
    )


def _mps(torch, reason: str) -> DeviceInfo:  # noqa: ANN001
    total, available = host_memory_gb()  # unified memory
    return DeviceInfo("mps", None, "Apple MPS (unified memory)", total, available, True, reason)


def _cpu(reason: str) -> DeviceInfo:
    total, available = host_memory_gb()
    # bf16 here is bf16 mixed precision, which trainers refuse without a GPU; whether this CPU computes bf16
    # natively is cpu_native_bf16() (what the training plan's dtype 'auto' reads).
    return DeviceInfo("cpu", None, cpu_name(), total, available, False, reason)


def free_memory() -> None:
    """Collect objects just dropped (a model) and return the CUDA cache, before the next model loads."""
    import gc

    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
