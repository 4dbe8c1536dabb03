"""The search index: BM25 over bilingual card texts plus dense card embeddings, cached on disk.

The card embeddings and tokens of a catalog are computed once and stored under
``settings.cache_path / "search"`` in a file keyed by the catalog's content hash and the embedder name
(written atomically); later processes load that file, so a query embeds only the query. Local-model
cards (a handful) are embedded in memory. The BM25 matrix itself is rebuilt from the cached tokens in a
few milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import settings
from .dense import Embedder, load_embedder, slug
from .lexicon import LEXICON_VERSION
from .text import TEXT_VERSION, card_sentence, card_text, learn_words, tokenize

_memory: dict[tuple[str, str, str], SearchIndex] = {}
_local_vectors: dict[tuple[str, str], np.ndarray] = {}
_lock = threading.Lock()
_keys: dict[int, tuple[list[dict[str, Any]], str]] = {}


@dataclass
class SearchIndex:
    """Cards with their BM25 index and (optionally) their embeddings."""

    cards: list[dict[str, Any]]
    tokens: list[list[str]]
    embedder: Embedder | None
    embeddings: np.ndarray | None
    loaded_from_disk: bool = False
    _bm25: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import bm25s

        self._bm25 = bm25s.BM25()
        # an empty token list would break the index; "∅" never matches a query token
        self._bm25.index([t or ["∅"] for t in self.tokens], show_progress=False)
        self._token_sets = [set(t) for t in self.tokens]

    def bm25_scores(self, query_tokens: list[str]) -> np.ndarray:
        if not query_tokens:
            return np.zeros(len(self.cards), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(query_tokens), dtype=np.float32)

    def dense_scores(self, text: str) -> np.ndarray | None:
        if self.embedder is None or self.embeddings is None or not text.strip():
            return None
        return self.embeddings @ self.embedder.encode_query(text)

    def matched_terms(self, row: int, query_tokens: list[str]) -> list[str]:
        have = self._token_sets[row]
        return [t for t in dict.fromkeys(query_tokens) if t in have]


def _digest(texts: list[str]) -> str:
    h = hashlib.sha256(f"text{TEXT_VERSION}-lex{LEXICON_VERSION}".encode())
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()


def index_dir() -> Path:
    return settings.cache_path / "search"


def _atomic_save(path: Path, arrays: dict[str, np.ndarray], tokens: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, tokens=np.array(json.dumps(tokens, ensure_ascii=False)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path, count: int, want_vectors: bool) -> tuple[list[list[str]], np.ndarray | None] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            tokens = json.loads(str(data["tokens"]))
            vectors = data["embeddings"] if "embeddings" in data.files else None
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    if len(tokens) != count or (want_vectors and (vectors is None or len(vectors) != count)):
        return None
    return tokens, vectors


def build_index(
    catalog_cards: list[dict[str, Any]],
    local_cards: list[dict[str, Any]] | None = None,
    embedder: str | None = None,
    dense: bool = True,
) -> SearchIndex:
    """The index over ``catalog_cards + local_cards`` (memoised in the process and on disk)."""
    local_cards = local_cards or []
    model = load_embedder(embedder) if dense else None
    model_name = model.name if model else "bm25"
    catalog_key = _catalog_key(catalog_cards)
    local_key = _digest([card_text(c) + "\0" + card_sentence(c) + c.get("path", "") for c in local_cards])
    memo_key = (catalog_key, local_key, model_name)
    with _lock:
        cached = _memory.get(memo_key)
        if cached is not None:
            return cached
        learn_words(a for card in catalog_cards + local_cards for a in card.get("aliases", []))
        path = index_dir() / f"index-{catalog_key[:20]}-{slug(model_name)}.npz"
        loaded = _load(path, len(catalog_cards), model is not None)
        if loaded is not None:
            tokens, vectors = loaded
        else:
            tokens = [tokenize(card_text(c)) for c in catalog_cards]
            vectors = model.encode_documents([card_sentence(c) for c in catalog_cards]) if model else None
            arrays = {"embeddings": vectors} if vectors is not None else {}
            _atomic_save(path, arrays, tokens)
        tokens = tokens + [tokenize(card_text(c)) for c in local_cards]
        if model is not None and vectors is not None and local_cards:
            vectors = np.vstack([vectors, *[_local_vector(model, c) for c in local_cards]])
        index = SearchIndex(
            cards=catalog_cards + local_cards,
            tokens=tokens,
            embedder=model,
            embeddings=vectors,
            loaded_from_disk=loaded is not None,
        )
        while len(_memory) >= 4:  # a few live indexes per process are enough
            _memory.pop(next(iter(_memory)))
        _memory[memo_key] = index
        return index


def _catalog_key(cards: list[dict[str, Any]]) -> str:
    """Content hash of a card list, remembered for the list object (catalogs are cached and immutable)."""
    entry = _keys.get(id(cards))
    if entry is not None and entry[0] is cards:
        return entry[1]
    key = _digest([card_text(c) + "\0" + card_sentence(c) for c in cards])
    if len(_keys) > 8:
        _keys.clear()
    _keys[id(cards)] = (cards, key)
    return key


def _local_vector(model: Embedder, card: dict[str, Any]) -> np.ndarray:
    sentence = card_sentence(card)
    key = (model.name, sentence)
    if key not in _local_vectors:
        _local_vectors[key] = model.encode_documents([sentence])[0]
    return _local_vectors[key][None, :]


def clear_memory() -> None:
    """Forget the in-process index (the disk cache stays)."""
    with _lock:
        _memory.clear()
