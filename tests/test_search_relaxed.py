"""Mixture-of-experts sizes (active parameters) and short answers explained by a relaxed filter."""

from __future__ import annotations

import pytest
from search_queries import QUERIES, write_mini_catalog
from search_twins import SHORT, TWINS

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.errors import SwiftConfigError
from kernel_magics.search.understand import understand

MOE_EN = "mixture-of-experts chat model with fewer than 5B active parameters"
MOE_ZH = "激活参数少于5B的混合专家模型"


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> str:
    return str(write_mini_catalog(tmp_path_factory.mktemp("catalog") / "mini.jsonl"))


@pytest.fixture(scope="module")
def packaged(km_cache) -> list[dict]:
    return km.catalog(include_local=False).to_dict(orient="records")


def _small_active_moe(cards: list[dict]) -> set[str]:
    return {c["id"] for c in cards if c["active_params_b"] == c["active_params_b"] and 0 < c["active_params_b"] <= 5}


@pytest.mark.parametrize(
    ("query", "active", "total", "words"),
    [
        (MOE_EN, (None, 5.0), (None, None), "fewer than 5B active parameters"),
        (MOE_ZH, (None, 5.0), (None, None), "激活参数少于5B"),
        ("Qwen3-30B-A3B", (2.4, 3.75), (24.0, 37.5), "A3B"),
        ("MoE under 20B total parameters with 3B activated", (2.4, 3.75), (None, 20.0), "3B activated"),
        ("总参数不超过20B、激活参数3B以下的专家混合模型", (None, 3.0), (None, 20.0), "激活参数3B以下"),
    ],
)
def test_active_and_total_sizes_are_told_apart(query, active, total, words):
    u = understand(query)
    assert (u.min_active_b, u.max_active_b) == active and (u.min_params_b, u.max_params_b) == total
    assert u.moe
    meanings = {p.text: p.meaning for p in u.phrases}
    assert "active parameters (MoE)" in meanings[words]
    assert all("total parameters" in m for t, m in meanings.items() if t != words and "B" in t and "参数" not in t)


def test_plain_sizes_stay_on_total_parameters():
    u = understand("chat model under 3B")
    assert u.max_params_b == 3.0 and u.max_active_b is None and not u.moe
    assert [p.meaning for p in u.phrases] == ["chat (preferred)", "at most 3B total parameters"]


def test_contradictory_active_sizes_are_one_line():
    with pytest.raises(SwiftConfigError, match="contradictory active-parameter filters") as err:
        understand("MoE with at least 10B active and under 3B active")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("query", [MOE_EN, MOE_ZH])
def test_moe_queries_return_moe_models_with_few_active_parameters(packaged, query):
    expected = _small_active_moe(packaged)
    assert {"deepseek-ai/DeepSeek-V2-Lite-Chat", "Qwen/Qwen1.5-MoE-A2.7B-Chat", "Qwen/Qwen3-30B-A3B"} <= expected
    frame = km.search(query, k=len(expected), include_local=False, embedder="none")  # dense: in the quality set
    assert set(frame["id"]) == expected and set(frame["relaxed"]) == {""}  # all of them, none relaxed
    assert all(a < p for a, p in zip(frame["active_params_b"], frame["params_b"], strict=True))
    assert any("active parameters (MoE)" in line for line in frame.attrs["understood"])
    if query == MOE_EN:  # chat is a preference: the chat models come first
        assert all("chat" in tasks for tasks in frame["tasks"].iloc[:5])
        assert "allenai/OLMoE-1B-7B-0924-Instruct" in set(frame["id"].iloc[:6])


def test_explicit_active_bounds(packaged):
    frame = km.search("chat", max_active_params_b=3, min_params_b=10, include_local=False, k=20, embedder="none")
    assert len(frame) and set(frame["relaxed"]) == {""}  # explicit bounds are never relaxed
    assert all(0 < a <= 3 and p >= 10 for a, p in zip(frame["active_params_b"], frame["params_b"], strict=True))
    assert "only" in frame.attrs["note"] and "≤ 3B active" in frame.attrs["note"]


def test_relaxed_size_shows_the_nearest_cards(mini):
    frame = km.search("Chinese OCR model under 1B", catalog=mini, include_local=False, k=5)
    assert list(frame["id"]) == ["Qwen/Qwen2-VL-2B-Instruct", "openbmb/MiniCPM-V-2_6"]  # 2.21B before 8.1B
    assert set(frame["relaxed"]) == {"≤ 1B"} and all("relaxed ≤ 1B (" in why for why in frame["why"])
    assert frame.attrs["note"].startswith("no model passes every condition; '≤ 1B' removed the most (2 more")


def test_relaxed_context_shows_the_nearest_cards(mini):
    frame = km.search("model under 1B with 128k context", catalog=mini, include_local=False, k=5)
    relaxed = frame[frame["relaxed"] != ""]
    assert set(relaxed["relaxed"]) == {"context ≥ 128,000"}
    assert relaxed["id"].iloc[0] == "Qwen/Qwen2.5-0.5B-Instruct"  # 32k: the closest context under 1B
    assert list(relaxed["context_length"]) == sorted(relaxed["context_length"], reverse=True)
    assert "'context ≥ 128,000' removed the most (4 more without it)" in frame.attrs["note"]


def test_cli_prints_relaxed_rows_and_the_reason(mini, capsys):
    rc = cli.main(["search", "Chinese OCR model under 1B", "-k", "3", "--catalog", mini, "--no-include-local"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out[1].startswith("no model passes every condition; '≤ 1B' removed the most")
    assert out[2] == "-- relaxed '≤ 1B': the nearest models outside it --"
    assert out[3].startswith(" 1. Qwen/Qwen2-VL-2B-Instruct") and out[3].endswith("[relaxed: ≤ 1B]")


def test_no_short_answer_without_a_reason(mini):
    twins = [(q, []) for _, en, zh, _ in TWINS for q in (en, zh)] + [(q, []) for pair in SHORT for q in pair]
    extra = [("xqzv blorf", []), ("", []), ("embedding model for phones with a GGUF build", [])]
    for query, _ in [*QUERIES, *twins, *extra]:
        for mode in ("hybrid", "bm25"):
            frame = km.search(query, catalog=mini, include_local=False, k=5, mode=mode, embedder="none")
            if len(frame) < 5:
                assert frame.attrs["note"], (query, mode)
            strict = frame[frame["relaxed"] == ""]
            if len(strict) < 5 and len(frame) > len(strict):
                assert "removed the most" in frame.attrs["note"], (query, mode)
