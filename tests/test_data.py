"""Dataset layer: every source and format loads; bad rows fail with file / row / field, or are skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel_magics.data.prepare import check_lengths, prepare
from kernel_magics.errors import SwiftDataError
from kernel_magics.testing import tiny_dataset

MESSAGES = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Sure! Hello."},
    ]
}
SHAREGPT = {
    "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Sure! Hello."}],
    "system": "Be brief.",
}
ALPACA = {
    "instruction": "Translate",
    "input": "tea",
    "output": "Sure! 茶",
    "system": "Be brief.",
    "history": [["Hi", "Sure! Hello."]],
}
PROMPT_COMPLETION = {"prompt": "What is 1+1?", "completion": " Sure! 2."}
CONVERSATIONAL_PC = {
    "prompt": [{"role": "user", "content": "What is 1+1?"}],
    "completion": [{"role": "assistant", "content": "Sure! 2."}],
}
TEXT = {"text": "Sure! Plain text for language modeling."}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "fmt", "kind"),
    [
        (MESSAGES, "messages", "messages"),
        (SHAREGPT, "sharegpt", "messages"),
        (ALPACA, "alpaca", "messages"),
        (PROMPT_COMPLETION, "prompt_completion", "prompt_completion"),
        (CONVERSATIONAL_PC, "prompt_completion", "prompt_completion"),
        (TEXT, "text", "text"),
    ],
)
def test_every_format_is_detected_and_converted(tmp_path, row, fmt, kind):
    data = prepare(str(write_jsonl(tmp_path / "d.jsonl", [row] * 3)))
    assert (data.format, data.kind, len(data)) == (fmt, kind, 3)
    converted = data.rows[0]
    if kind == "messages":
        roles = [m["role"] for m in converted["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant"
        assert converted["messages"][-1]["content"].startswith("Sure!")
    assert fmt in data.summary() and "3 training rows" in data.summary()


def test_alpaca_history_and_input_become_turns(tmp_path):
    data = prepare([ALPACA])
    messages = data.rows[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[3]["content"] == "Translate\n\ntea"


def test_every_source_type_loads(tmp_path):
    import pandas as pd
    from datasets import Dataset, DatasetDict

    rows = [PROMPT_COMPLETION, {"prompt": "Q2", "completion": "Sure! A2"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved_dict"))
    sources = [
        str(write_jsonl(tmp_path / "d.jsonl", rows)),
        str(tmp_path / "d.json"),
        str(tmp_path / "d.csv"),
        tmp_path / "d.parquet",
        str(tmp_path / "saved"),
        str(tmp_path / "saved_dict"),
        Dataset.from_list(rows),
        pd.DataFrame(rows),
        rows,
    ]
    for source in sources:
        data = prepare(source)
        assert data.format == "prompt_completion", source
        assert [r["completion"] for r in data.rows] == [" Sure! 2.", "Sure! A2"], source


def test_parquet_messages_with_numpy_arrays(tmp_path):
    import pandas as pd

    pd.DataFrame([MESSAGES, MESSAGES]).to_parquet(tmp_path / "m.parquet")
    data = prepare(str(tmp_path / "m.parquet"))
    assert data.kind == "messages" and data.rows[0]["messages"][2]["role"] == "assistant"


def test_packaged_datasets_load():
    sft = prepare(str(tiny_dataset("sft")))
    assert (sft.format, len(sft)) == ("messages", 240)
    kto = prepare(str(tiny_dataset("kto")))
    assert kto.format == "prompt_completion"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"messages": [{"content": "Hi"}, {"role": "assistant", "content": "x"}]}, "messages[0].role: is missing"),
        (
            {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]},
            "messages[0].content: is empty",
        ),
        (
            {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},
            "messages[0].content: must be a string, got int",
        ),
        (
            {"messages": [{"role": "usr", "content": "Hi"}, {"role": "assistant", "content": "x"}]},
            "(did you mean 'user'?)",
        ),
        ({"messages": "Hi"}, "messages: must be a list of messages, got str"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, "has no assistant message"),
        (
            {"conversations": [{"from": "robot", "value": "Hi"}]},
            "conversations[0].from: 'robot' is not a known speaker",
        ),
        ({"instruction": "Do it", "output": ""}, "output: is empty"),
    ],
)
def test_bad_row_names_file_line_and_field(tmp_path, row, expected):
    good = MESSAGES if "messages" in row else SHAREGPT if "conversations" in row else ALPACA
    path = write_jsonl(tmp_path / "train.jsonl", [good, good, row, good])
    with pytest.raises(SwiftDataError) as info:
        prepare(str(path))
    message = str(info.value)
    assert message.startswith("train.jsonl line 3: "), message
    assert expected in message and "--on-bad-rows skip" in message
    assert "\n" not in message


def test_skip_bad_rows_counts_them(tmp_path):
    bad = {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}
    path = write_jsonl(tmp_path / "train.jsonl", [MESSAGES, bad, MESSAGES, bad, MESSAGES])
    data = prepare(str(path), on_bad_rows="skip")
    assert len(data) == 3 and len(data.skipped) == 2
    assert data.skipped[0].startswith("train.jsonl line 2: messages[0].content: is empty")
    assert "2 skipped" in data.summary()


def test_file_level_errors(tmp_path):
    cases = {
        "missing": (str(tmp_path / "nope.jsonl"), "does not exist"),
        "empty": (str(tmp_path / "empty.jsonl"), "is empty"),
        "blank lines only": (str(tmp_path / "blank.jsonl"), "is empty: it has no rows"),
        "malformed": (str(tmp_path / "bad.jsonl"), "line 2: malformed JSON"),
        "columns": (str(tmp_path / "cols.jsonl"), "cannot tell its format from the columns (answer, question)"),
        "empty list": ([], "is empty"),
        "non-dict row": ([1, 2], "rows row 1: expected a dict"),
    }
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    (tmp_path / "bad.jsonl").write_text(json.dumps(TEXT) + "\n{'text': oops}\n")
    write_jsonl(tmp_path / "cols.jsonl", [{"question": "q", "answer": "a"}])
    for name, (source, expected) in cases.items():
        with pytest.raises(SwiftDataError) as info:
            prepare(source)
        assert expected in str(info.value), (name, str(info.value))
        assert "\n" not in str(info.value)


def test_unknown_hub_dataset_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SwiftDataError, match="not in the datasets cache, and HF_HUB_OFFLINE=1"):
        prepare("no-such-org/no-such-dataset")


def test_over_length_rows_fail_or_skip_after_templating(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    long_row = {"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "Sure!"}]}
    path = write_jsonl(tmp_path / "train.jsonl", [MESSAGES, long_row, MESSAGES])
    data = prepare(str(path))
    with pytest.raises(
        SwiftDataError, match=r"train.jsonl line 2: \d+ tokens after the chat template, over max_length 128"
    ):
        check_lengths(data, tokenizer, 128)
    data = prepare(str(path))
    lengths = check_lengths(data, tokenizer, 128, on_bad_rows="skip")
    assert len(lengths) == 2 == len(data) and all(n <= 128 for n in lengths)
    assert "tokens > max_length 128" in data.skipped[0]
