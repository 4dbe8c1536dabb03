"""Merging a LoRA adapter into its base model: one plain Hugging Face folder that any server loads.

The base is always loaded unquantized in float32 and the merge is computed there (merging into 4-bit
weights is lossy), then cast to the requested dtype. The folder gets safetensors weights, the
tokenizer with its chat template, the generation config and ``merge_info.json``, and appears
atomically: it is written beside ``out_dir`` and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..adapters import read_json
from ..errors import SwiftConfigError, SwiftUsageError
from .loading import (
    adapter_path,
    attach_adapter,
    check_adapter_matches,
    load_base_model,
    load_tokenizer,
    quiet_loading,
    resolve_base,
    torch_dtype,
)

MERGE_INFO = "merge_info.json"


def default_out_dir(adapter: Path) -> Path:
    """``runs/<id>/adapter`` -> ``runs/<id>/merged``; any other adapter folder -> ``<folder>-merged``."""
    if adapter.name == "adapter":
        return adapter.parent / "merged"
    return adapter.with_name(adapter.name + "-merged")


def folder_size(path: Path) -> int:
    """Bytes in all files below ``path`` (or the file's size)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def replace_folder(staging: Path, target: Path, marker: str) -> None:
    """Move the finished ``staging`` folder to ``target``; an old ``target`` is replaced only if it
    is empty or was written by us (holds ``marker``), so a user's folder is never deleted."""
    if target.exists():
        if target.is_file() or (any(target.iterdir()) and not (target / marker).is_file()):
            raise SwiftConfigError(
                f"{target} already exists and was not written by kernel_magics; choose another out_dir"
            )
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def staging_dir(target: Path) -> Path:
    """An empty folder beside ``target`` (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def usual_permissions(path: Path) -> None:
    """Give ``path`` (and what is below it) the modes a plain ``mkdir`` / ``open`` would have given,
    instead of the private ones of temporary files, so servers running as other users can read it."""
    mask = os.umask(0)
    os.umask(mask)
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in items:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def merge(
    base: Any = None,
    adapter: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
    dtype: str | None = None,
) -> Path:
    """Merge a LoRA ``adapter`` into ``base`` and save a standalone model folder; returns its path.

    Args:
        base: the base model (``"tiny"``, a folder or a hub id); default: the base recorded in the
            adapter's ``adapter_config.json``.
        adapter: the adapter folder, or a training run (anything with ``adapter_dir``).
        out_dir: where the merged model goes (default: ``runs/<id>/merged`` beside the adapter).
        dtype: ``float32`` / ``bfloat16`` / ``float16`` of the saved weights (default: the base's dtype).

    The merged model's logits equal the adapter model's (float32: within 1e-5). It loads with
    ``AutoModelForCausalLM.from_pretrained(out_dir)``, in vLLM and with ``%swift serve --model out_dir``.
    """
    target, info = merge_quietly(base, adapter, out_dir, dtype)
    print(
        f"merged {info['adapter']} into {Path(info['base']).name} -> {target} ({human_size(folder_size(target))}, "
        f"{info['dtype']}); serve it with: %swift serve --model {target}"
    )
    return target


def merge_quietly(
    base: Any, adapter: Any, out_dir: str | os.PathLike[str] | None, dtype: str | None
) -> tuple[Path, dict[str, str]]:
    """:func:`merge` without the summary line; returns (folder, what merge_info.json says)."""

    if adapter is None:
        raise SwiftUsageError("merge needs an adapter: km.merge(base, 'runs/<id>/adapter') or %swift merge ADAPTER")
    adapter_dir = adapter_path(adapter)
    base_dir = resolve_base(base, adapter_dir)
    check_adapter_matches(base_dir, adapter_dir)
    base_config = read_json(base_dir / "config.json")
    save_dtype = torch_dtype(
        dtype, default=str(base_config.get("dtype") or base_config.get("torch_dtype") or "float32")
    )
    target = Path(os.fspath(out_dir)).expanduser() if out_dir else default_out_dir(adapter_dir)

    merge_dtype = merge_precision(base_dir, save_dtype)
    model = attach_adapter(load_base_model(base_dir, merge_dtype), adapter_dir)
    with quiet_loading():
        merged = model.merge_and_unload()
    merged = merged.to(save_dtype)
    merged.config.dtype = save_dtype
    merged.config.name_or_path = str(target)
    tokenizer = load_tokenizer(base_dir, adapter_dir)

    staging = staging_dir(target)
    try:
        with quiet_loading():
            merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _copy_generation_config(base_dir, staging, merged)
        info = {
            "base": str(base_dir),
            "adapter": str(adapter_dir),
            "dtype": str(save_dtype).replace("torch.", ""),
            "merged_in": str(merge_dtype).replace("torch.", ""),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (staging / MERGE_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        usual_permissions(staging)
        replace_folder(staging, target, MERGE_INFO)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target, info


def merge_precision(base_dir: Path, save_dtype: Any) -> Any:
    """float32 for the merge (exact) when a float32 copy of the base fits in half the free host memory;
    otherwise the dtype being saved (what fits: a 7B model in float32 needs ~28 GiB)."""
    import torch

    from ..device import host_memory_gb

    stored = sum(p.stat().st_size for p in base_dir.glob("*.safetensors")) or sum(
        p.stat().st_size for p in base_dir.glob("*.bin")
    )
    dtype_name = str(read_json(base_dir / "config.json").get("dtype") or "float32").replace("torch.", "")
    widen = 1 if dtype_name == "float32" else 2
    _, available_gb = host_memory_gb()
    if available_gb and stored * widen > 0.5 * available_gb * 1024**3:
        return save_dtype
    return torch.float32


def _copy_generation_config(base_dir: Path, staging: Path, merged: Any) -> None:
    """Keep the base's generation settings (eos ids, sampling defaults) with the merged weights."""
    source = base_dir / "generation_config.json"
    if source.is_file():
        shutil.copyfile(source, staging / "generation_config.json")
    elif getattr(merged, "generation_config", None) is not None:
        merged.generation_config.save_pretrained(staging)
