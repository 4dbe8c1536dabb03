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
nothing. Nothing waits long: the Hub's port is tried first (``CONNECT_TIMEOUT_S``), each request has connect
and read timeouts, and the whole pull, huggingface_hub's retries included, ends after ``TOTAL_TIMEOUT_S``.
Every network or Hub error (of whichever HTTP library huggingface_hub uses: ``httpx``, ``httpx2``,
``requests``) and an answer that is not the expected JSON give one line, with the catalog as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
TOTAL_TIMEOUT_S = 30.0  # the whole pull, retries included
# errors raised by these packages are network or Hub errors, whatever their class (httpx and httpx2 alike)
_NETWORK_PACKAGES = ("httpx", "httpx2", "httpcore", "h11", "h2", "requests", "urllib3", "huggingface_hub", "ssl")


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
        cards = _pull_within(limit, [SORTS[o] for o in orders], TOTAL_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any network or Hub failure leaves the catalog as it was
        if not _is_network_error(exc):
            raise
        line = " ".join((str(exc) if isinstance(exc, HubUnreachable) else f"{type(exc).__name__}: {exc}").split())
        line = line[:160]
        what = "the Hub's answer is not the expected JSON" if _is_bad_answer(exc) else "could not reach the Hub"
        return RefreshReport(f"{what} ({line}): {unchanged}", offline=True)
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


def _is_bad_answer(exc: BaseException) -> bool:
    return isinstance(exc, (ValueError, TypeError, KeyError, AttributeError)) and not _from_network_package(exc)


def _from_network_package(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] in _NETWORK_PACKAGES for cls in type(exc).__mro__)


def _is_network_error(exc: BaseException) -> bool:
    """A network, Hub or bad-answer error, judged by where its class comes from (not by one library's classes)."""
    return isinstance(exc, (OSError, TimeoutError, json.JSONDecodeError, HubAnswerError)) or _from_network_package(exc)


class HubAnswerError(ValueError):
    """The Hub answered with something other than the listings or configs it documents."""


class HubUnreachable(OSError):
    """No TCP connection to the Hub's host and port (refused, no route, a name that does not resolve)."""


def _pull_within(limit: int, sorts: list[str], total_s: float) -> list[dict[str, Any]]:
    """:func:`_pull` with per-request timeouts, ended after ``total_s`` (a late pull's cards are dropped)."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        from ..hub import unreachable_reason

        try:
            refused = unreachable_reason(CONNECT_TIMEOUT_S)  # in here: a slow name lookup counts in total_s too
            if refused:
                raise HubUnreachable(refused)
            with _timeouts():
                outcome["cards"] = _pull(limit, sorts)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="km-catalog-refresh", daemon=True)
    worker.start()
    worker.join(total_s)
    if worker.is_alive():
        raise TimeoutError(f"no complete answer within {total_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["cards"]


@contextmanager
def _timeouts() -> Iterator[None]:
    """huggingface_hub's shared client with connect / read timeouts while the refresh runs (its default has
    none), made with the HTTP module huggingface_hub itself uses; unchanged where it offers no client factory."""
    try:
        from huggingface_hub.utils import _http
    except ImportError:
        yield
        return
    module = getattr(_http, "httpx2", None) or getattr(_http, "httpx", None)
    factory = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None)
    if module is None or factory is None or not hasattr(_http, "set_client_factory"):
        yield
        return

    def with_timeouts():  # noqa: ANN202 - an httpx / httpx2 Client
        hooks = {"request": [_http.hf_request_event_hook]} if hasattr(_http, "hf_request_event_hook") else {}
        timeout = module.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        return module.Client(event_hooks=hooks, follow_redirects=True, timeout=timeout)

    _http.set_client_factory(with_timeouts)
    try:
        yield
    finally:
        if getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) is with_timeouts:
            _http.set_client_factory(factory)


def _listing(items: Any) -> Iterator[Any]:
    """The models of one listing; an answer that does not parse into models is a :class:`HubAnswerError`."""
    try:
        for info in items:
            if not isinstance(getattr(info, "id", None), str):
                raise HubAnswerError(f"a listed model has no id ({type(info).__name__})")
            yield info
    except (TypeError, KeyError, AttributeError) as exc:
        raise HubAnswerError(f"{type(exc).__name__}: {exc}") from None


def _pull(limit: int, sorts: list[str]) -> list[dict[str, Any]]:
    """New cards: models listed per task and sort order, their configs and their quantized siblings."""
    from huggingface_hub import HfApi

    api = HfApi()
    known = {card["id"] for card in load_catalog(CATALOG_FILE)}  # the packaged catalog's hand-checked cards win
    listed: dict[str, Any] = {}
    siblings: dict[str, set[str]] = {}
    for pipeline in PIPELINES:
        for order in sorts:
            for info in _listing(api.list_models(pipeline_tag=pipeline, sort=order, limit=limit, expand=EXPAND)):
                _sort_listing(info, listed, siblings)
    for tag in QUANTIZED_TAGS:
        listing = api.list_models(filter=tag, sort="downloads", limit=limit * 4, expand=["tags", "cardData"])
        for info in _listing(listing):
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
    from huggingface_hub import hf_hub_download

    folder = hub_catalog_path().parent / "hub-configs"
    try:
        path = hf_hub_download(repo_id, "config.json", cache_dir=folder, etag_timeout=READ_TIMEOUT_S)
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - gated, none, lost: the card is made without it
        if not _is_network_error(exc):
            raise
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
