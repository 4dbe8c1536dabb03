"""km.refresh_catalog / %swift search --refresh against recorded Hub responses (tests/hub_responses/).

``HfApi.list_models`` and ``hf_hub_download`` answer from the recordings, and every real HTTP request fails
the test: no test here touches the network.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import httpx
import httpx2
import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import GatedRepoError, RemoteEntryNotFoundError
from huggingface_hub.hf_api import ModelInfo
from search_queries import MINI, write_mini_catalog

import kernel_magics as km
import kernel_magics.hub
from kernel_magics import cli
from kernel_magics.config import settings
from kernel_magics.errors import SwiftConfigError
from kernel_magics.search import configs, hubcards, index, sources
from kernel_magics.search.catalog import hub_catalog_path, load_catalog
from kernel_magics.search.hubcards import PIPELINES
from kernel_magics.search.refresh import QUANTIZED_TAGS

RECORDED = Path(__file__).resolve().parent / "hub_responses"
GATED = {"meta-llama/Llama-4-Scout-17B-16E-Instruct", "google/embeddinggemma-300m"}
NEW = {
    "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "HuggingFaceTB/SmolLM3-3B",
    "allenai/OLMoE-1B-7B-0125-Instruct",
    "LiquidAI/LFM2-1.2B",
    "Qwen/Qwen3-VL-4B-Instruct",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "nvidia/parakeet-tdt-0.6b-v2",
    "distil-whisper/distil-large-v3.5",
    "Qwen/Qwen3-Embedding-0.6B",
    "google/embeddinggemma-300m",
    "Qwen/Qwen3-Reranker-0.6B",
}


def _http_error(cls: type, repo_id: str, status: int) -> Exception:
    url = f"https://huggingface.co/{repo_id}/resolve/main/config.json"
    response = httpx.Response(status, request=httpx.Request("GET", url))
    return cls(f"{status} Client Error for url: {url}", response=response)


class RecordedHub:
    """``list_models`` and ``hf_hub_download`` answered from the recorded responses."""

    def __init__(self) -> None:
        self.listings = json.loads((RECORDED / "list_models.json").read_text(encoding="utf-8"))
        self.requests: list[str] = []
        self.downloads: list[str] = []
        self.failure: Exception | None = None

    def list_models(self, *, pipeline_tag=None, filter=None, sort=None, limit=None, expand=None, **other):  # noqa: A002
        if self.failure is not None:
            raise self.failure
        assert not other, other
        key = (f"pipeline_tag={pipeline_tag}" if pipeline_tag else f"filter={filter}") + f"&sort={sort}"
        self.requests.append(key)
        assert pipeline_tag is None or {"safetensors", "cardData", "config"} <= set(expand)
        for item in copy.deepcopy(self.listings.get(key, []))[:limit]:
            item.setdefault("siblings", None)
            yield ModelInfo(**item)

    def hf_hub_download(self, repo_id, filename, **kwargs):
        assert filename == "config.json" and kwargs.get("cache_dir")  # kept out of the hub cache
        self.downloads.append(repo_id)
        if repo_id in GATED:
            raise _http_error(GatedRepoError, repo_id, 401)
        path = RECORDED / "configs" / (repo_id.replace("/", "--") + ".json")
        if not path.is_file():
            raise _http_error(RemoteEntryNotFoundError, repo_id, 404)
        return str(path)


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    recorded = RecordedHub()
    monkeypatch.setattr(huggingface_hub.HfApi, "list_models", lambda self, **kw: recorded.list_models(**kw))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recorded.hf_hub_download)

    def no_network(*args, **kwargs):
        raise AssertionError("a test touched the network")

    monkeypatch.setattr(httpx.Client, "send", no_network)
    monkeypatch.setattr(httpx2.Client, "send", no_network)  # huggingface_hub 2.x's HTTP client
    monkeypatch.setattr(kernel_magics.hub, "unreachable_reason", lambda *args, **kwargs: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "km-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.delenv("KERNEL_MAGICS_CATALOG", raising=False)
    yield recorded
    index.clear_memory()


def test_refresh_derives_cards_from_recorded_responses(hub):
    report = km.refresh_catalog(limit=10)
    assert report.cards == len(NEW) and not report.offline and "\n" not in report.message
    assert report.message.startswith(f"pulled {len(NEW)} new model cards from the Hub")
    assert report.path == hub_catalog_path() and report.path.parent.parent == settings.cache_path
    assert [p.name for p in report.path.parent.iterdir() if p.name.endswith(".tmp")] == []  # written atomically
    wanted = {f"pipeline_tag={p}&sort={s}" for p in PIPELINES for s in ("trending_score", "downloads")}
    assert set(hub.requests) == wanted | {f"filter={t}&sort=downloads" for t in QUANTIZED_TAGS}
    assert set(hub.downloads) == NEW  # configs of new models only: packaged and quantized repos are not read
    cards = {card["id"]: card for card in load_catalog(report.path)}
    assert set(cards) == NEW  # Qwen3-30B-A3B and Phi-4-mini are in the packaged catalog, GGUF repos are builds

    moe = cards["Qwen/Qwen3-30B-A3B-Instruct-2507"]
    assert moe["params_b"] == 30.5 and math.isclose(moe["active_params_b"], 3.3, rel_tol=0.03)  # published: 3.3B
    assert moe["context_length"] == 262144 and moe["license"] == "apache-2.0" and moe["release"] == "2025-07"
    assert moe["architecture"] == "Qwen3MoeForCausalLM" and moe["family"] == "qwen3" and moe["tasks"] == ["chat"]
    assert set(moe["formats"]) == {"safetensors", "gguf", "mlx", "awq"}  # unsloth, mlx-community, cpatonn
    olmoe = cards["allenai/OLMoE-1B-7B-0125-Instruct"]
    assert olmoe["params_b"] == 6.92 and math.isclose(olmoe["active_params_b"], 1.28, rel_tol=0.03)
    scout = cards["meta-llama/Llama-4-Scout-17B-16E-Instruct"]  # gated: no config, the name gives 17B active
    assert scout["params_b"] == 109.0 and scout["active_params_b"] == 17.0 and scout["license"] == "llama4"
    assert scout["modalities"] == ["text", "image"] and {"en", "vi", "hi"} <= set(scout["languages"])
    smol = cards["HuggingFaceTB/SmolLM3-3B"]
    assert smol["formats"] == ["safetensors", "gguf"] and smol["context_length"] == 65536
    assert smol["languages"] == ["en", "fr", "es", "it", "pt", "zh", "ar", "ru"] and smol["active_params_b"] is None
    assert cards["LiquidAI/LFM2-1.2B"]["license"] == "lfm1.0"  # "other" + license_name
    vl = cards["Qwen/Qwen3-VL-4B-Instruct"]
    assert vl["modalities"] == ["text", "image", "video"] and vl["context_length"] == 262144
    assert {"chat", "vqa"} <= set(vl["tasks"])
    embed = cards["Qwen/Qwen3-Embedding-0.6B"]  # its GGUF sibling has no base_model tag: matched by name
    assert embed["tasks"] == ["embedding"] and embed["formats"] == ["safetensors", "gguf"]
    asr = cards["nvidia/parakeet-tdt-0.6b-v2"]  # no safetensors metadata, no config.json: size from the name
    assert asr["params_b"] == 0.6 and asr["modalities"] == ["audio"] and asr["tasks"] == ["asr"]
    assert cards["Qwen/Qwen3-Reranker-0.6B"]["tasks"] == ["rerank"]


def test_search_uses_packaged_and_hub_cards(hub):
    query = "mixture-of-experts chat model with fewer than 5B active parameters"
    before = km.search(query, k=20, include_local=False, embedder="none")
    assert "Qwen/Qwen3-30B-A3B-Instruct-2507" not in set(before["id"])
    packaged = len(km.catalog(include_local=False))
    km.refresh_catalog(limit=10)
    table = km.catalog(include_local=False)
    assert len(table) == packaged + len(NEW)
    after = km.search(query, k=20, include_local=False, embedder="none")
    strict = after[after["relaxed"] == ""]
    assert {"Qwen/Qwen3-30B-A3B-Instruct-2507", "allenai/OLMoE-1B-7B-0125-Instruct"} <= set(strict["id"])
    assert "Qwen/Qwen3-30B-A3B" in set(strict["id"])  # the packaged cards are still there
    assert all(0 < a <= 5 and a < p for a, p in zip(strict["active_params_b"], strict["params_b"], strict=True))
    built = index.build_index(sources.all_cards(include_local=False)[0], dense=False)
    assert len(built.cards) == packaged + len(NEW)  # the index was rebuilt for the new card set
    mini = write_mini_catalog(settings.cache_path / "mini.jsonl")
    assert len(km.catalog(catalog=str(mini), include_local=False)) == len(MINI)  # joined to the packaged one only


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_says_so_and_changes_nothing(hub, monkeypatch, variable):
    km.refresh_catalog(limit=10)
    before = hub_catalog_path().read_bytes()
    requests = len(hub.requests)
    monkeypatch.setenv(variable, "1")
    report = km.refresh_catalog(limit=10)
    assert report.offline and report.message.startswith(f"offline ({variable}=1): ") and "\n" not in report.message
    assert "nothing changed" in report.message
    assert len(hub.requests) == requests and hub_catalog_path().read_bytes() == before


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError, httpx2.ConnectError, httpx2.ReadTimeout, httpx2.RemoteProtocolError],
    ids=["httpx-connect", "httpx2-connect", "httpx2-read-timeout", "httpx2-protocol"],
)
def test_no_network_says_so_and_keeps_the_last_catalog(hub, monkeypatch, failure):
    km.refresh_catalog(limit=10)
    before = hub_catalog_path().read_bytes()
    hub.failure = failure("[Errno -3] Temporary failure in name resolution")
    report = km.refresh_catalog(limit=10)
    assert report.offline
    assert report.message.startswith(f"could not reach the Hub ({failure.__name__}: [Errno -3]"), report.message
    assert "\n" not in report.message and len(report.message) < 300
    assert hub_catalog_path().read_bytes() == before


def test_bad_limit_is_one_line(hub):
    with pytest.raises(SwiftConfigError, match="--limit must be a whole number") as err:
        km.refresh_catalog(limit=0)
    assert "\n" not in str(err.value) and hub.requests == []


def test_cli_refresh_flag(hub, capsys):
    rc = cli.main(["search", "MoE chat model under 5B active", "--refresh", "--limit", "3", "-k", "3"]
                  + ["--no-include-local", "--embedder", "none"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and out.splitlines()[0].startswith("pulled ")
    assert "understood: MoE → mixture of experts" in out and "under 5B active → at most 5B active" in out
    assert set(hub.requests) and all(key.endswith(("trending_score", "downloads")) for key in hub.requests)


def test_hub_card_helpers():
    mixtral = {"num_local_experts": 8, "num_experts_per_tok": 2, "hidden_size": 4096, "intermediate_size": 14336}
    mixtral["num_hidden_layers"] = 32
    assert math.isclose(configs.active_params(mixtral, 46.7e9) / 1e9, 12.9, rel_tol=0.03)  # published: 12.9B
    deepseek_lite = {"n_routed_experts": 64, "num_experts_per_tok": 6, "hidden_size": 2048}
    deepseek_lite.update(moe_intermediate_size=1408, num_hidden_layers=27, first_k_dense_replace=1)
    assert math.isclose(configs.active_params(deepseek_lite, 15.7e9) / 1e9, 2.66, rel_tol=0.03)
    assert configs.active_params({"hidden_size": 4096, "num_hidden_layers": 32}, 8e9) is None  # dense
    assert configs.active_from_name("Qwen1.5-MoE-A2.7B-Chat") == 2.7
    assert configs.active_from_name("granite-3.1-3b-a800m-instruct") == 0.8
    assert configs.active_from_name("Llama-4-Maverick-17B-128E-Instruct") == 17.0
    assert configs.active_from_name("Llama-3.1-8B-Instruct") is None
    assert hubcards.family_of("meta-llama/Llama-3.1-8B-Instruct", "llama") == "llama3.1"
    assert hubcards.family_of("google/gemma-3-4b-it", "gemma3") == "gemma3"
    assert hubcards.family_of("Qwen/Qwen3-30B-A3B-Instruct-2507", "qwen3_moe") == "qwen3"
    assert hubcards.family_of("distil-whisper/distil-large-v3.5", "whisper") == "distil-large-v3.5"


def test_panel_refresh_button_and_magic_flag(hub, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from kernel_magics.widgets.search_panel import SearchPanel

    panel = SearchPanel()
    panel._settings.update(include_local=False, embedder="none")
    panel.run_search("MoE chat model under 5B active", k=20)
    assert "Qwen/Qwen3-30B-A3B-Instruct-2507" not in [r["id"] for r in panel.results]
    panel.refresh(wait=True)
    assert panel.status.startswith(f"pulled {len(NEW)} new model cards") and not panel.refreshing
    assert "Qwen/Qwen3-30B-A3B-Instruct-2507" in [r["id"] for r in panel.results]  # searched again
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    panel.refresh(wait=True)
    assert panel.status.startswith("offline (HF_HUB_OFFLINE=1)") and len(hub.requests) == 19
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "kernel_magics")
    try:
        shown = shell.run_line_magic("swift", "search --refresh --limit 5 --no-include-local --embedder none MoE")
    finally:
        shell.run_line_magic("unload_ext", "kernel_magics")
    assert shown.status.startswith("offline (HF_HUB_OFFLINE=1)") and "nothing changed" in shown.status
    assert shown.results and all(r["active_params_b"] for r in shown.results)
