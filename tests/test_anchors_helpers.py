"""``benchmarks/anchors.py`` compares tools on identical work only if its rows are what it says and it notices
when batches differ: equal-length rows, the batch-shape lines children print, and the table's warning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import anchors  # noqa: E402 - benchmarks/ is not a package


def test_equal_length_rows_are_single_turn_and_exactly_as_long_as_asked(tiny_model: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    path, kept = anchors.equal_length_rows(tiny_model, 64, tmp_path)
    rows = [json.loads(line)["messages"] for line in path.read_text().splitlines()]
    assert len(rows) == kept >= 200  # of the 240 packaged rows
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    for messages in rows:
        assert [m["role"] for m in messages][-2:] == ["user", "assistant"]
        assert sum(m["role"] == "assistant" for m in messages) == 1
        text = tokenizer.apply_chat_template(messages, chat_template=anchors.CHATML, tokenize=False)
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 64


def test_step_logs_and_batch_shapes_are_read_from_a_child(tmp_path: Path):
    lines = [
        "loading...",
        "KM-STEP-SHAPE 4x64 tokens=256 labelled=120 seconds=0.5000",
        "{'loss': '2.018', 'grad_norm': '0.869'}",
        "KM-STEP-SHAPE 4x56 tokens=220 labelled=100 seconds=0.4000",
        "{'loss': 1.5}",
        "KM-STEP-SHAPE 4x64 tokens=256 labelled=110 seconds=0.5500",
        "{'loss': 1.2}",
        "{'train_runtime': 3.0, 'train_loss': 1.6}",
    ]
    code = "import sys; print(sys.argv[1])"
    seen = anchors.timed_lines([sys.executable, "-c", code, "\n".join(lines)], anchors.child_env(), tmp_path / "log")
    timing = seen.timing(skip=1)
    assert len(seen.steps) == 3  # the summary line is not a step
    assert timing.batches == ["4x64", "4x56", "4x64"]
    assert timing.forward_backward_s == [0.4, 0.55]
    assert len(timing.step_s) == 1
    assert anchors.batch_shapes([timing]) == "2 shapes"


def test_the_table_warns_when_the_tools_trained_on_different_batches(capsys):
    same = anchors.Timing(1.0, [0.5, 0.5], None, ["4x64"] * 3, [0.4, 0.4])
    other = anchors.Timing(1.0, [0.6, 0.6], None, ["4x56"] * 3, [0.5, 0.5])
    anchors.table("m", {"km.sft": [same], "tool": [same]}, "rows")
    assert "not all one identical shape" not in capsys.readouterr().out
    anchors.table("m", {"km.sft": [same], "tool": [other]}, "rows")
    printed = capsys.readouterr().out
    assert "not all one identical shape" in printed
    assert "tool / km.sft median s/step, round by round: 1.20" in printed
