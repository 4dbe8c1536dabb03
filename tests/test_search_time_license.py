"""Release dates and licences in search queries (English and Chinese): phrases, the licence table, and
searches of the 13-card test catalog (its newest card is from 2024-09, the machine's clock is later)."""

from __future__ import annotations

import pytest
from search_queries import MINI, write_mini_catalog

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.errors import SwiftConfigError
from kernel_magics.search.catalog import load_catalog
from kernel_magics.search.licenses import COMMERCIAL, LLAMA, PERMISSIVE, RESEARCH_ONLY, TABLE, verdict
from kernel_magics.search.timeframe import catalog_month
from kernel_magics.search.understand import understand

AS_OF = "2025-04"


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> str:
    return str(write_mini_catalog(tmp_path_factory.mktemp("catalog") / "mini.jsonl"))


def _search(query: str, mini: str, k: int = 5):
    return km.search(query, k=k, catalog=mini, include_local=False, embedder="none")


def _window(query: str, as_of: str = AS_OF) -> tuple[str | None, str | None]:
    time = understand(query, as_of).time_attrs()
    return time["released_from"], time["released_until"]


@pytest.mark.parametrize(
    ("query", "window"),
    [
        ("vision model released in 2022", ("2022-01", "2022-12")),
        ("2022年发布的视觉模型", ("2022-01", "2022-12")),
        ("chat models from 2021", ("2021-01", "2021-12")),
        ("code model from 2022 to 2023", ("2022-01", "2023-12")),
        ("2022至2023年的代码模型", ("2022-01", "2023-12")),
        ("embedding model released before 2023", (None, "2022-12")),
        ("2023年以前的向量模型", (None, "2022-12")),
        ("asr model from 2023 onwards", ("2023-01", None)),
        ("2023 年以后发布的语音识别模型", ("2023-01", None)),
        ("reranker released after 2022", ("2023-01", None)),
        ("OCR model since March 2024", ("2024-03", None)),
        ("2024年3月以后的文字识别模型", ("2024-03", None)),
        ("a model up to 2022", (None, "2022-12")),
        ("vision model from 2022 or 2023", ("2022-01", "2023-12")),
        ("2022年下半年的视觉模型", ("2022-07", "2022-12")),
        ("chat model from the second half of 2022", ("2022-07", "2022-12")),
        ("Q2 2023 code model", ("2023-04", "2023-06")),
        ("2023年第二季度的代码模型", ("2023-04", "2023-06")),
        ("model with 2048 tokens of context", (None, None)),  # a context length, not a year
    ],
)
def test_absolute_dates(query, window):
    assert _window(query) == window


@pytest.mark.parametrize(
    ("query", "window"),
    [
        ("translation model from this year", ("2025-01", None)),
        ("今年的翻译模型", ("2025-01", None)),
        ("math model from last year", ("2024-01", "2024-12")),
        ("去年的数学模型", ("2024-01", "2024-12")),
        ("chat model from the past year", ("2024-05", None)),
        ("最近一年的对话模型", ("2024-05", None)),
        ("tts model from the last 3 months", ("2025-02", None)),
        ("近3个月的语音合成模型", ("2025-02", None)),
        ("近半年的模型", ("2024-11", None)),
        ("models from the last two years", ("2023-05", None)),
    ],
)
def test_relative_dates_count_back_from_the_catalog_date(query, window):
    assert _window(query) == window
    assert _window(query, "2023-06") != window  # another catalog date, another window: not the clock


def test_the_packaged_catalog_date_is_its_newest_release():
    cards = load_catalog()
    assert catalog_month(cards) == max(c["release"] for c in cards)
    assert understand("last 6 months").as_of == catalog_month(cards)


def test_newest_sorts_and_contradictions_are_one_line():
    for query in ("newest code model", "recently released embedding model", "最新的代码模型", "最近发布的向量模型"):
        u = understand(query, AS_OF)
        assert u.sort_recent and u.time_attrs()["sort"] == "newest first" and u.released_from is None
    with pytest.raises(SwiftConfigError, match="contradictory release dates") as err:
        understand("chat model before 2022 from this year", AS_OF)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("query", "allowed", "excluded"),
    [
        ("Apache 协议的模型", {"apache-2.0"}, set()),
        ("apache 2.0 licensed model", {"apache-2.0"}, set()),
        ("MIT 许可证的向量模型", {"mit"}, set()),
        ("BSD 许可的模型", {"bsd-2-clause", "bsd-3-clause"}, set()),
        ("可商用的模型", COMMERCIAL, set()),
        ("model I can use commercially", COMMERCIAL, set()),
        ("宽松协议的模型", PERMISSIVE, set()),
        ("permissive license", PERMISSIVE, set()),
        ("no research-only licence", None, RESEARCH_ONLY),
        ("不是仅限研究许可的模型", None, RESEARCH_ONLY),
        ("chat model, no Llama licence", None, LLAMA),
        ("非 Llama 协议的对话模型", None, LLAMA),
        ("non-commercial model", None, COMMERCIAL),
        ("不能商用的模型", None, COMMERCIAL),
    ],
)
def test_license_phrases(query, allowed, excluded):
    u = understand(query, AS_OF)
    assert u.licenses == (frozenset(allowed) if allowed is not None else None)
    assert u.excluded_licenses == frozenset(excluded)


def test_license_table_covers_the_catalog_and_derives_the_groups():
    used = {c["license"] for c in load_catalog()} - {"other"}
    assert used <= set(TABLE)
    assert all(row.source for row in TABLE.values())
    assert {"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0"} <= PERMISSIVE
    assert not PERMISSIVE & (LLAMA | {"gemma", "qwen", "cc-by-sa-3.0", "bigcode-openrail-m"})  # policy, cap, SA
    assert LLAMA <= COMMERCIAL and not RESEARCH_ONLY & COMMERCIAL
    assert {"qwen-research", "cc-by-nc-4.0", "mnpl", "mistral-research"} <= RESEARCH_ONLY
    assert not {"glm-4", "minicpm", "baichuan"} & COMMERCIAL  # commercial use only after registering
    assert verdict("apache-2.0") == "commercial ok"
    assert verdict("llama3.1") == "commercial ok (under 700M MAU)"
    assert verdict("qwen-research") == "research only"
    assert verdict("minicpm") == "commercial after registration (use policy)"
    assert verdict("other") == "unknown: check the licence"


def test_time_filter_and_attrs(mini):
    frame = _search("chat model from 2024", mini)
    assert len(frame) == 5 and all(r.startswith("2024") for r in frame["release"])
    assert frame.attrs["time"]["released_from"] == "2024-01" and frame.attrs["time"]["released_until"] == "2024-12"
    assert "from 2024 → released 2024-01 to 2024-12" in frame.attrs["understood"]


def test_relative_time_uses_the_catalog_date(mini):
    frame = _search("近3个月的模型", mini)
    assert frame.attrs["time"]["as_of"] == "2024-09"  # the test catalog's newest card, not today
    assert "近3个月 → released 2024-07 or later (catalog as of 2024-09)" in frame.attrs["understood"]
    expected = {c["id"] for c in MINI if c["release"] >= "2024-07"}
    wide = _search("近3个月的模型", mini, k=10)
    assert set(wide[wide["relaxed"] == ""]["id"]) == expected


@pytest.mark.parametrize("query", ["newest chat model", "最新的对话模型"])
def test_newest_first(mini, query):
    frame = _search(query, mini, k=8)
    assert list(frame["release"]) == sorted(frame["release"], reverse=True)
    assert frame["release"].iloc[0] == "2024-09" and frame.attrs["time"]["sort"] == "newest first"
    assert all("released 20" in why for why in frame["why"])


def test_time_is_relaxed_first_with_its_reason(mini):
    frame = _search("model released before 2023", mini)
    assert list(frame["id"])[0] == "openai/whisper-small" and list(frame["relaxed"])[0] == ""
    relaxed = frame[frame["relaxed"] != ""]
    assert set(relaxed["relaxed"]) == {"released 2022-12 or earlier"} and len(relaxed) == 4
    assert list(relaxed["release"]) == sorted(relaxed["release"])  # nearest release first
    assert frame.attrs["note"].startswith("only 1 model passes every condition; 'released 2022-12 or earlier'")


def test_negated_llama_licence_is_not_a_llama_search(mini):
    frame = _search("chat model, no Llama licence", mini, k=10)
    assert len(frame) >= 5 and not set(frame["license"]) & LLAMA
    assert frame.attrs["filters"] == ["not Llama license"]  # no 'llama models' name filter
    assert frame.attrs["license"]["excluded"] == sorted(LLAMA)


def test_commercial_vision_models_with_verdicts(mini):
    frame = _search("可商用的视觉模型", mini)
    assert set(frame[frame["relaxed"] == ""]["id"]) == {"Qwen/Qwen2-VL-2B-Instruct", "llava-hf/llava-1.5-7b-hf"}
    assert dict(zip(frame["id"], frame["license_verdict"], strict=True)) == {
        "Qwen/Qwen2-VL-2B-Instruct": "commercial ok",
        "llava-hf/llava-1.5-7b-hf": "commercial ok (under 700M MAU)",
        "openbmb/MiniCPM-V-2_6": "commercial after registration (use policy)",
    }
    assert "removed the most" in frame.attrs["note"]


def test_cli_prints_the_verdict(mini, capsys):
    rc = cli.main(["search", "Apache 协议的代码模型", "-k", "2", "--catalog", mini, "--no-include-local"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out[0].startswith("understood: Apache 协议 → Apache-2.0 license")
    assert "apache-2.0 (commercial ok)" in out[1]


def test_panel_shows_the_time_understood_and_the_verdicts(mini):
    from kernel_magics.widgets.search_panel import SearchPanel

    panel = SearchPanel(_search("最新的对话模型", mini))
    assert panel.understood[0] == "最新的 → newest first (catalog as of 2024-09)"
    assert [r["license_verdict"] for r in panel.results][:2] == ["commercial ok", "commercial ok"]
    assert panel.results[0]["release"] == "2024-09"
