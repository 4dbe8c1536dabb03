"""Students' adapters: an uploaded archive checked before anything loads, then kept under the service's folder.

An upload is a zip of exactly ``adapter_config.json`` and ``adapter_model.safetensors`` (what
``km.publish`` sends). :meth:`AdapterStore.check` refuses, in one line, anything else: pickled weights,
another PEFT type, a base other than the served model, a rank or size past the teacher's limits, tensors
that do not fit the served model, or one adapter too many for the student. Stored adapters live in
``<folder>/<user>/<name>/``, written by renaming a complete staging folder into place.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SwiftConfigError, SwiftModelError
from .tensors import base_shapes, check_shapes, lora_ranks, read_header

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE)
PICKLED = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
USER = re.compile(r"^[\w@+-][\w.@+-]{0,127}$")  # no leading dot: never ".." or a hidden folder


@dataclass(frozen=True)
class Upload:
    """A checked upload: the two files' bytes and what they say."""

    config: dict[str, Any]
    weights: bytes
    rank: int
    size_bytes: int


def adapter_id(user: str, name: str) -> str:
    """``alice/poem``: the model name the adapter is served as; one line when either part is unusable."""
    if not USER.match(user):
        raise SwiftConfigError(f"the hub user name {user[:40]!r} cannot name an adapter folder")
    if not NAME.match(name):
        raise SwiftConfigError(
            f"adapter name {name[:40]!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return f"{user}/{name}"


class AdapterStore:
    """The adapters of a class on disk, and the checks an upload must pass."""

    def __init__(self, root: Path, model_dir: Path, base_names: set[str], max_rank: int, max_bytes: int) -> None:
        self.root = Path(root)
        (self.root / ".staging").mkdir(parents=True, exist_ok=True)
        self.model_dir = Path(model_dir)
        self.base_names = {n for name in base_names if name for n in (name, PurePosixPath(name).name)}
        self.max_rank = max_rank
        self.max_bytes = max_bytes
        self._base_shapes: dict[str, list[int]] | None = None

    # -- checks ---------------------------------------------------------------------------------------
    def check(self, archive: bytes) -> Upload:
        """The upload in ``archive`` when it may be served; else a one-line :class:`SwiftModelError`."""
        if len(archive) > self.max_bytes:
            raise SwiftModelError(f"the adapter is {len(archive) / 2**20:.1f} MiB; this class takes at most {self.max_bytes / 2**20:g} MiB")
        files = self._unpack(archive)
        config = self._checked_config(files[CONFIG_FILE])
        shapes = read_header(files[WEIGHTS_FILE], WEIGHTS_FILE)
        ranks = lora_ranks(shapes) or [int(config.get("r") or 0)]
        if max(ranks) > self.max_rank:
            raise SwiftModelError(f"the adapter has LoRA rank {max(ranks)}; this class takes ranks up to {self.max_rank}")
        if self._base_shapes is None:
            self._base_shapes = base_shapes(self.model_dir)
        check_shapes(shapes, self._base_shapes, self.model_dir.name)
        return Upload(config, files[WEIGHTS_FILE], max(ranks), sum(len(b) for b in files.values()))

    def _unpack(self, archive: bytes) -> dict[str, bytes]:
        try:
            bundle = zipfile.ZipFile(io.BytesIO(archive))
            members = bundle.infolist()
        except (zipfile.BadZipFile, ValueError):
            raise SwiftModelError("the upload is not a zip archive; publish with km.publish(...)") from None
        names = [m.filename for m in members]
        pickled = [n for n in names if n.endswith(PICKLED)]
        if pickled:
            raise SwiftModelError(f"{pickled[0][:60]} is a pickle file; only safetensors adapters are accepted (save with safe_serialization=True)")
        if sorted(names) != sorted(ADAPTER_FILES):
            raise SwiftModelError(f"an adapter upload holds exactly {' and '.join(ADAPTER_FILES)}; got {', '.join(n[:40] for n in names[:4]) or 'nothing'}")
        if sum(m.file_size for m in members) > self.max_bytes:
            raise SwiftModelError(f"the adapter unpacks to more than {self.max_bytes / 2**20:g} MiB, this class's limit")
        return {m.filename: bundle.read(m) for m in members}

    def _checked_config(self, data: bytes) -> dict[str, Any]:
        try:
            config = json.loads(data)
        except ValueError:
            raise SwiftModelError(f"{CONFIG_FILE} is not JSON") from None
        if not isinstance(config, dict):
            raise SwiftModelError(f"{CONFIG_FILE} is not a JSON object")
        peft_type = str(config.get("peft_type", "")).upper()
        if peft_type != "LORA":
            raise SwiftModelError(f"{CONFIG_FILE} says peft_type {peft_type[:20] or 'nothing'}; only LoRA adapters are served")
        base = str(config.get("base_model_name_or_path") or "")
        if base not in self.base_names and PurePosixPath(base).name not in self.base_names:
            served = sorted(self.base_names)[0]
            raise SwiftModelError(f"the adapter was trained on {base[:80] or 'an unnamed model'}; this class serves {served}: train on it")
        return config

    # -- files ----------------------------------------------------------------------------------------
    def folder(self, user: str, name: str) -> Path:
        return self.root / user / name

    def names(self, user: str) -> list[str]:
        """The adapters ``user`` has stored, by name."""
        folder = self.root / user
        return sorted(p.name for p in folder.iterdir() if (p / CONFIG_FILE).is_file()) if folder.is_dir() else []

    def stored(self) -> dict[str, Path]:
        """Every stored adapter: ``user/name`` -> folder."""
        found: dict[str, Path] = {}
        for user in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for name in self.names(user.name):
                found[f"{user.name}/{name}"] = user / name
        return found

    def stage(self, upload: Upload) -> Path:
        """The upload written to a new folder inside the store (same file system: it is renamed into place)."""
        folder = Path(tempfile.mkdtemp(dir=self.root / ".staging"))
        (folder / CONFIG_FILE).write_text(json.dumps(upload.config, indent=2))
        (folder / WEIGHTS_FILE).write_bytes(upload.weights)
        return folder

    def commit(self, staged: Path, user: str, name: str) -> Path:
        """Put ``staged`` in place of ``user/name`` (an older one is moved aside, then removed)."""
        target = self.folder(user, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=self.root / ".staging")) / "old"
            target.rename(old)
        staged.rename(target)
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
        return target

    def remove(self, user: str, name: str) -> None:
        target = self.folder(user, name)
        if target.exists():
            trash = Path(tempfile.mkdtemp(dir=self.root / ".staging"))
            target.rename(trash / "gone")
            shutil.rmtree(trash, ignore_errors=True)

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)
