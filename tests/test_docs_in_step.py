"""The Chinese README stays in step with the English one: they link to each other, have the same sections in
the same order, the same commands (every fenced code block) and tables with the same rows, so a section,
command or table row added to one and not the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


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
