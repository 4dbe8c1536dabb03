"""Public API of merge, export and evaluation: ``km.merge``, ``km.export``, ``km.evaluate``, ``km.compare``.

::

    import kernel_magics as km
    merged = km.merge("tiny", "runs/<id>/adapter")                 # plain HF folder, logits as the adapter's
    km.export(merged, format="gguf", outtype="q8_0")               # llama.cpp / Ollama file
    km.export(merged, format="bnb-4bit")                           # bitsandbytes NF4 folder
    km.evaluate(["tiny", merged], "data.jsonl", metrics=["perplexity", "exact_match"], holdout=0.1)
    km.compare({"base": "tiny", "sft": merged}, ["Hello!", "你好"])
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SwiftConfigError, SwiftUsageError, did_you_mean
from .loading import is_adapter
from .merge import folder_size, human_size, merge_quietly, replace_folder, staging_dir, usual_permissions

__all__ = ["ExportResult", "FORMATS", "export"]

FORMATS = ("gguf", "bnb-4bit", "gptq", "awq")
EXPORT_INFO = "export_info.json"


@dataclass
class ExportResult:
    """An exported artefact: where it is, how big, and how to serve it."""

    path: Path
    format: str
    size_bytes: int
    serve: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> str:
        return human_size(self.size_bytes)

    def to_text(self) -> str:
        lines = [f"exported {self.format} -> {self.path} ({self.size})"]
        lines += [f"  {key}: {value}" for key, value in self.details.items()]
        lines += ["serve it with:"] + [f"  {command}" for command in self.serve]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in self.details.items()
        )
        serve = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in self.serve)
        return (
            f"<div><b>{html.escape(self.format)}</b> &rarr; <code>{html.escape(str(self.path))}</code> "
            f"({html.escape(self.size)})<table>{rows}</table>serve it with:<ul>{serve}</ul></div>"
        )


def _default_out_dir(model_dir: Path, fmt: str) -> Path:
    from ..config import settings

    name = f"{model_dir.parent.name}-{model_dir.name}" if model_dir.name in ("merged", "adapter") else model_dir.name
    return settings.workspace_path / "exports" / f"{name}-{fmt}"


def _merged_name(adapter: Any) -> str:
    """A file-name stem for a model merged on the fly: the run's name, else the adapter folder's."""
    from .loading import adapter_path

    folder = adapter_path(adapter)
    return folder.parent.name if folder.name in ("adapter", "final") else folder.name


def _write_info(folder: Path, result: dict[str, Any]) -> None:
    import json

    (folder / EXPORT_INFO).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")


def export(
    model_dir: Any = None,
    format: str = "gguf",  # noqa: A002 - the name users know from other tools
    out_dir: str | os.PathLike[str] | None = None,
    outtype: str = "f16",
    adapter: Any = None,
    dataset: Any = None,
    bits: int = 4,
    group_size: int = 128,
    calib_samples: int = 128,
    quant_type: str = "nf4",
) -> ExportResult:
    """Export a model folder as GGUF, bitsandbytes 4-bit, GPTQ or AWQ; returns an :class:`ExportResult`.

    Args:
        model_dir: a model (``"tiny"``, a folder, a merged run) or an adapter folder / run (merged first).
        format: ``gguf`` (llama.cpp, Ollama), ``bnb-4bit`` (transformers / QLoRA), ``gptq`` or ``awq``
            (vLLM; need a CUDA GPU).
        out_dir: folder to write into (default: ``<workspace>/exports/<model>-<format>``).
        outtype: GGUF tensor type: ``f32``, ``f16``, ``bf16``, ``q8_0`` or ``q4_0``.
        adapter: a LoRA adapter to merge into ``model_dir`` before exporting.
        dataset: calibration rows for GPTQ / AWQ (your training data).
        bits, group_size, calib_samples: GPTQ / AWQ settings.
        quant_type: ``nf4`` or ``fp4`` for ``bnb-4bit``.
    """
    from ..hub import resolve_model

    fmt = str(format).lower().strip()
    if fmt not in FORMATS:
        raise SwiftUsageError(
            f"export format '{format}' is not one of {', '.join(FORMATS)}{did_you_mean(fmt, FORMATS)}"
        )
    if fmt == "gguf":
        from .gguf import OUTTYPES

        if outtype not in OUTTYPES:
            raise SwiftConfigError(f"GGUF outtype '{outtype}' is not one of {', '.join(OUTTYPES)}")
    if fmt in ("gptq", "awq"):
        from .gptq import require_cuda

        require_cuda(fmt)  # fail before any merge or load
    merged_tmp: Path | None = None
    try:
        if adapter is not None or is_adapter(model_dir):
            from ..config import settings

            adapter_value = adapter if adapter is not None else model_dir
            settings.workspace_path.mkdir(parents=True, exist_ok=True)  # room for a full model, unlike /tmp
            merged_tmp = Path(tempfile.mkdtemp(prefix=".merge-for-export-", dir=settings.workspace_path))
            source, info = merge_quietly(
                model_dir if adapter is not None else None,
                adapter_value,
                merged_tmp / _merged_name(adapter_value),
                None,
            )
            origin = f"{info['base']} + {info['adapter']}"
        else:
            source = resolve_model(None if model_dir is None else os.fspath(model_dir))
            origin = str(source)
        target = Path(os.fspath(out_dir)).expanduser() if out_dir else _default_out_dir(source, fmt)
        if fmt == "gguf":
            return _export_gguf(source, target, outtype, origin)
        quantization = Quantization(dataset, bits, group_size, calib_samples, quant_type)
        return _export_folder(source, target, fmt, origin, quantization)
    finally:
        if merged_tmp is not None:
            shutil.rmtree(merged_tmp, ignore_errors=True)


def _export_gguf(source: Path, target: Path, outtype: str, origin: str) -> ExportResult:
    from .gguf import write_gguf, write_modelfile

    target.mkdir(parents=True, exist_ok=True)
    name = source.name if source.name != "merged" else f"{source.parent.name}"
    final = target / f"{name}-{outtype}.gguf"
    handle, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=target)
    os.close(handle)
    try:
        info = write_gguf(source, Path(tmp), outtype, name=name)
        usual_permissions(Path(tmp))
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    modelfile = write_modelfile(final)
    result = ExportResult(
        path=final,
        format="gguf",
        size_bytes=final.stat().st_size,
        serve=[
            f"llama-server -m {final} --port 8080",
            f"cd {target} && ollama create {name.lower()} -f {modelfile.name}",
        ],
        details={
            "architecture": info.architecture,
            "outtype": outtype,
            "tensors": info.tensor_count,
            "tokenizer_pre": info.tokenizer_pre,
            "source": origin,
        },
    )
    return result


@dataclass(frozen=True)
class Quantization:
    """The quantizing knobs of :func:`export`: calibration rows and GPTQ / AWQ settings, bitsandbytes' type."""

    dataset: Any
    bits: int
    group_size: int
    calib_samples: int
    quant_type: str


def _export_folder(source: Path, target: Path, fmt: str, origin: str, quantization: Quantization) -> ExportResult:
    staging = staging_dir(target)
    try:
        if fmt == "bnb-4bit":
            from ..device import select_device
            from .bnb import write_bnb_4bit

            details = write_bnb_4bit(source, staging, quantization.quant_type, select_device().torch_device)
            serve = [
                f"%swift serve --model {target} --backend transformers",
                f"AutoModelForCausalLM.from_pretrained('{target}')",
            ]
        else:
            from .gptq import write_quantized

            q = quantization
            details = write_quantized(source, staging, fmt, q.dataset, q.bits, q.group_size, q.calib_samples)
            serve = [f"%swift serve --model {target} --backend vllm", f"vllm serve {target}"]
        details["source"] = origin
        _write_info(staging, {"format": fmt, **details})
        usual_permissions(staging)
        replace_folder(staging, target, EXPORT_INFO)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    result = ExportResult(target, fmt, folder_size(target), serve, details)
    return result
