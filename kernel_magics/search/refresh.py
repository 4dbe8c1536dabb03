"""``km.refresh_catalog()`` / ``%swift search --refresh``: pull this month's models from the Hub.

::

    km.refresh_catalog(limit=50)       # the 50 most trending and most downloaded models per task
    %swift search --refresh --limit 20 MoE chat model with under 5B active parameters

Lists models through ``huggingface_hub`` (``HfApi.list_models`` with card data and safetensors metadata,
sorted by trending score and by downloads, one listing per task: text generation, image-text-to-text,
speech recognition, embeddings, reranking, text to speech), lists the quantized repos (GGUF, AWQ, GPTQ,
MLX, bitsandbytes) to know which builds exist, reads each new model's ``config.json`` (context length,
mixture-of-experts layout) and writes the cards (:mod:`kernel_magics.search.hubcards`) atomically to
``hub_catalog_path()`` in the kernel_magics cache. Search then uses the packaged catalog and these cards;
the index is rebuilt for the new card set on the next query.

Offline (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``, or no network) it says so in one line and changes
nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwiftConfigError
from .catalog import CATALOG_FILE, COLUMNS, hub_catalog_path, load_catalog, normalize_card
from .hubcards import PIPELINES, card_from_listing, quantized_base, quantized_format

DEFAULT_LIMIT = 50
SORTS = {"trending": "trending_score", "downloads": "downloads"}
QUANTIZED_TAGS = ("gguf", "awq", "gptq", "mlx", "bitsandbytes")
EXPAND = [
    "cardData",
    "config",
    "createdAt",
    "downloads",
    "likes",
    "pipeline_tag",
    "safetensors",
    "tags",
    "trendingScore",
]
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class RefreshReport:
    """What a refresh did, in one line (``message``) and in numbers."""

    message: str
    path: Path | None = None
    cards: int = 0
    offline: bool = False

    def __str__(self) -> str:
        return self.message

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.message)


def offline_reason() -> str | None:
    """Why the Hub must not be contacted (an offline variable), or None."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"{name}={os.environ[name]}"
    try:
        from huggingface_hub import constants
    except ImportError:
        return "huggingface_hub is not installed"
    return "HF_HUB_OFFLINE was set when huggingface_hub was imported" if constants.HF_HUB_OFFLINE else None


def refresh_catalog(limit: int | None = None, sort: str | Sequence[str] = ("trending", "downloads")) -> RefreshReport:
    """Pull model cards from the Hub into the local catalog; offline or unreachable, change nothing.

    Args:
        limit: models per task and sort order (default 50).
        sort: ``"trending"``, ``"downloads"`` or both (the default).
    """
    limit = DEFAULT_LIMIT if limit is None else limit
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise SwiftConfigError(f"--limit must be a whole number of models of at least 1, got {limit!r}")
    orders = [sort] if isinstance(sort, str) else list(sort)
    for order in orders:
        if order not in SORTS:
            raise SwiftConfigError(f"sort: '{order}' is not one of {', '.join(SORTS)}")
    unchanged = "the model catalog was not refreshed and nothing changed"
    reason = offline_reason()
    if reason:
        return RefreshReport(f"offline ({reason}): {unchanged}; unset it to pull new model cards", offline=True)
    try:
        cards = _pull(limit, [SORTS[o] for o in orders])
    except Exception as exc:  # noqa: BLE001 - any network or Hub failure leaves the catalog as it was
        if not _is_network_error(exc):
            raise
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        return RefreshReport(f"could not reach the Hub ({line}): {unchanged}", offline=True)
    if not cards:
        return RefreshReport(f"the Hub listed no new model with a known size: {unchanged}")
    path = _write(cards)
    from .index import clear_memory

    clear_memory()  # the next query builds the index of the new card set
    return RefreshReport(
        f"pulled {len(cards)} new model cards from the Hub ({'/'.join(orders)}, {limit} per task) into {path}",
        path=path,
        cards=len(cards),
    )


def _is_network_error(exc: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        import httpx

        http_errors: tuple[type[BaseException], ...] = (httpx.HTTPError,)
    except ImportError:  # pragma: no cover - huggingface_hub depends on httpx
        http_errors = ()
    return isinstance(exc, (OSError, TimeoutError, HfHubHTTPError, OfflineModeIsEnabled, *http_errors))


def _pull(limit: int, sorts: list[str]) -> list[dict[str, Any]]:
    """New cards: models listed per task and sort order, their configs and their quantized siblings."""
    from huggingface_hub import HfApi

    api = HfApi()
    known = {card["id"] for card in load_catalog(CATALOG_FILE)}  # the packaged catalog's hand-checked cards win
    listed: dict[str, Any] = {}
    siblings: dict[str, set[str]] = {}
    for pipeline in PIPELINES:
        for order in sorts:
            for info in api.list_models(pipeline_tag=pipeline, sort=order, limit=limit, expand=EXPAND):
                _sort_listing(info, listed, siblings)
    for tag in QUANTIZED_TAGS:
        for info in api.list_models(filter=tag, sort="downloads", limit=limit * 4, expand=["tags", "cardData"]):
            _sort_listing(info, {}, siblings)
    new = [info for model_id, info in listed.items() if model_id not in known]
    with ThreadPoolExecutor(max_workers=8) as pool:
        found_configs = list(pool.map(lambda info: _config(info.id), new))
    cards = []
    for info, config in zip(new, found_configs, strict=True):
        card = card_from_listing(info, config, siblings.get(info.id, set()))
        if card is not None:
            cards.append(normalize_card(card, f"Hub model {info.id}"))
    return cards


def _sort_listing(info: Any, listed: dict[str, Any], siblings: dict[str, set[str]]) -> None:
    """A listed repo is either a quantized build of another model (a sibling) or a model of its own."""
    fmt = quantized_format(info)
    base = quantized_base(info) if fmt else None
    if fmt and base:
        siblings.setdefault(base, set()).add(fmt)
    elif not fmt or info.safetensors is not None:
        listed.setdefault(info.id, info)


def _config(repo_id: str) -> dict[str, Any]:
    """A model's ``config.json`` (empty when it has none or it is gated), kept out of the hub cache."""
    import httpx
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    folder = hub_catalog_path().parent / "hub-configs"
    try:
        path = hf_hub_download(repo_id, "config.json", cache_dir=folder)
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (HfHubHTTPError, EntryNotFoundError, httpx.HTTPError, OSError, ValueError):  # gated, none, lost
        return {}
    return config if isinstance(config, dict) else {}


def _write(cards: list[dict[str, Any]]) -> Path:
    """Write the cards to the Hub catalog file atomically (a reader sees the old file or the new one)."""
    path = hub_catalog_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    cards = sorted(cards, key=lambda c: (c["family"], c["id"].lower()))
    lines = [json.dumps({key: card[key] for key in COLUMNS}, ensure_ascii=False) for card in cards]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
