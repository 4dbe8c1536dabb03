"""The Chinese docs stay in step with the English ones.

The READMEs link to each other, have the same sections in the same order, the same commands (every fenced
code block) and tables with the same rows, so a section, command or table row added to one and not the
other fails here. Every lab in notebooks/ has a Chinese twin in notebooks/zh/ (and the other way round) with
the same cells in the same order: the same code, line for line, except lines that end with ``# example`` in
the English lab and ``# 示例`` at the same place in the twin (a Chinese example string), and every markdown
cell written in Chinese. The twins link to each other and are committed without outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CJK = re.compile(r"[\u4e00-\u9fff]")
LABS = ROOT / "notebooks"
ENGLISH_LABS = sorted(p.name for p in LABS.glob("*.ipynb"))
CHINESE_LABS = sorted(p.name for p in (LABS / "zh").glob("*.ipynb"))


def sections(path: Path) -> list[str]:
    """The ``## `` sections of a markdown file (the text before the first one is section 0)."""
    return re.split(r"^## .*$", path.read_text(encoding="utf-8"), flags=re.M)


def table_rows(text: str) -> list[int]:
    """Rows of each table in ``text`` (outside code blocks)."""
    counts, run = [], 0
    for line in FENCE.sub("", text).splitlines():
        if line.startswith("|"):
            run += 1
        elif run:
            counts.append(run)
            run = 0
    return counts + ([run] if run else [])


def test_the_readmes_link_to_each_other():
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert "(README.zh-CN.md)" in english.split("## ", 1)[0]
    assert "(README.md)" in chinese.split("## ", 1)[0]


def test_every_section_has_its_counterpart_with_the_same_commands_and_tables():
    english, chinese = sections(ROOT / "README.md"), sections(ROOT / "README.zh-CN.md")
    assert len(english) == len(chinese), "README.md and README.zh-CN.md have different numbers of sections"
    for number, (en, zh) in enumerate(zip(english, chinese, strict=True)):
        assert FENCE.findall(en) == FENCE.findall(zh), f"section {number}: the code blocks differ"
        assert table_rows(en) == table_rows(zh), f"section {number}: the tables' rows differ"
        assert re.search(r"[\u4e00-\u9fff]", zh) or not en.strip(), f"section {number} is not in Chinese"


def test_the_check_notices_a_missing_row(tmp_path):
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    shorter = english.replace("| `benchmarks/` |", "| `removed/` |").replace("| `binder/`", "x", 1)
    (tmp_path / "x.md").write_text(shorter, encoding="utf-8")
    assert [table_rows(s) for s in sections(tmp_path / "x.md")] != [table_rows(s) for s in sections(ROOT / "README.md")]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def code_differences(english: str, chinese: str) -> list[str]:
    """Where two code cells differ other than on marked example lines (``# example`` / ``# 示例``)."""
    en, zh = english.split("\n"), chinese.split("\n")
    if len(en) != len(zh):
        return [f"{len(en)} lines in English, {len(zh)} in Chinese"]
    return [
        f"line {number}: {a!r} != {b!r}"
        for number, (a, b) in enumerate(zip(en, zh, strict=True), 1)
        if a != b and not (a.rstrip().endswith("# example") and b.rstrip().endswith("# 示例"))
    ]


def test_every_lab_has_a_chinese_twin_and_every_twin_a_lab():
    assert ENGLISH_LABS, "no labs in notebooks/"
    assert ENGLISH_LABS == CHINESE_LABS, "notebooks/ and notebooks/zh/ hold different labs"


@pytest.mark.parametrize("name", ENGLISH_LABS)
def test_the_twin_has_the_same_cells_and_code(name: str):
    english, chinese = cells(LABS / name), cells(LABS / "zh" / name)
    assert [c["cell_type"] for c in english] == [c["cell_type"] for c in chinese], "the cells differ"
    for number, (en, zh) in enumerate(zip(english, chinese, strict=True)):
        if en["cell_type"] == "code":
            assert not code_differences(source(en), source(zh)), (number, code_differences(source(en), source(zh)))
            assert zh["metadata"] == en["metadata"], f"cell {number}: the metadata (tags) differ"
            assert zh["outputs"] == [] and zh["execution_count"] is None, f"cell {number}: commit without outputs"
        else:
            assert CJK.search(source(zh)), f"cell {number} is not in Chinese: {source(zh)[:80]!r}"
    assert len({c["id"] for c in chinese}) == len(chinese), "cell ids repeat"
    marked = sum(source(c).count("# 示例") for c in chinese if c["cell_type"] == "code")
    assert marked <= 3, "keep the Chinese example lines few"


@pytest.mark.parametrize("name", ENGLISH_LABS)
def test_the_twins_link_to_each_other_and_to_their_own_language(name: str):
    english, chinese = cells(LABS / name), cells(LABS / "zh" / name)
    first = [source(c) for c in english if c["cell_type"] == "markdown"][0]
    assert first.startswith(f"[中文版](zh/{name})"), "the English lab starts with a link to its twin"
    markdown = [source(c) for c in chinese if c["cell_type"] == "markdown"]
    assert markdown[0].startswith(f"[English](../{name})"), "the twin starts with a link to the English lab"
    links = re.findall(r"\]\(([^)]*\.ipynb)\)", "\n".join(markdown).replace(f"[English](../{name})", "", 1))
    assert all("/" not in link for link in links), f"links to other labs point to their Chinese twins: {links}"
    nb_en, nb_zh = (json.loads(p.read_text(encoding="utf-8")) for p in (LABS / name, LABS / "zh" / name))
    assert (nb_zh["metadata"], nb_zh["nbformat"]) == (nb_en["metadata"], nb_en["nbformat"])


def test_the_check_notices_a_changed_code_line():
    english = "\n".join(source(c) for c in cells(LABS / ENGLISH_LABS[0]) if c["cell_type"] == "code")
    assert not code_differences(english, english)
    assert code_differences(english, english.replace("km.", "km2.", 1))
    assert code_differences(english, english + "\n")
    assert not code_differences('q = "code"  # example', 'q = "代码"  # 示例')
    assert code_differences('q = "code"  # example', 'q = "代码"')
