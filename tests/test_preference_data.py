"""Preference data: every accepted format becomes TRL rows; bad rows fail with file / row / field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel_magics.data.preference import (
    check_preference_lengths,
    label_counts,
    parse_label,
    prepare_preference,
    to_conversational,
)
from kernel_magics.errors import SwiftDataError
from kernel_magics.testing import tiny_dataset


def _msgs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


def _write(tmp_path: Path, rows: list[dict], name: str = "prefs.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_kit_data_is_detected() -> None:
    pairs = prepare_preference(tiny_dataset("dpo"))
    assert (pairs.format, pairs.kind, len(pairs)) == ("preference", "preference", 160)
    assert set(pairs.rows[0]) == {"prompt", "chosen", "rejected"}
    kto = prepare_preference(tiny_dataset("kto"), unpaired=True)
    assert (kto.format, kto.kind, len(kto)) == ("kto", "unpaired_preference", 240)
    assert label_counts(kto) == (120, 120)


def test_paired_rows_unpair_for_kto() -> None:
    data = prepare_preference(tiny_dataset("dpo"), unpaired=True)
    assert len(data) == 320 and label_counts(data) == (160, 160)
    first, second = data.rows[:2]
    assert first["prompt"] == second["prompt"] and first["label"] is True and second["label"] is False
    assert data.labels[:2] == ["dpo.jsonl line 1 (chosen)", "dpo.jsonl line 1 (rejected)"]


def test_conversational_pairs_split_at_the_shared_prefix() -> None:
    prefix = _msgs(("system", "Be kind."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Color of the sky?"))
    row = {"chosen": prefix + _msgs(("assistant", "Blue.")), "rejected": prefix + _msgs(("assistant", "Green."))}
    data = prepare_preference([row])
    assert data.format == "conversational"
    assert data.rows[0] == {
        "prompt": prefix,
        "chosen": _msgs(("assistant", "Blue.")),
        "rejected": _msgs(("assistant", "Green.")),
    }


def test_swift_messages_and_rejected_response() -> None:
    row = {"messages": _msgs(("user", "2+2?"), ("assistant", "4")), "rejected_response": "5"}
    data = prepare_preference([row])
    assert data.format == "swift"
    assert data.rows[0] == {
        "prompt": _msgs(("user", "2+2?")),
        "chosen": _msgs(("assistant", "4")),
        "rejected": _msgs(("assistant", "5")),
    }


def test_message_prompt_with_string_replies_and_system_column() -> None:
    rows = [
        {"prompt": _msgs(("user", "Hi")), "chosen": "Hello!", "rejected": "Go away."},
        {"system": "Be brief.", "prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
    ]
    data = prepare_preference(rows)
    assert data.rows[0]["chosen"] == _msgs(("assistant", "Hello!"))
    assert data.rows[1]["prompt"] == _msgs(("system", "Be brief."), ("user", "Hi"))


def test_strings_become_chat_messages() -> None:
    data = prepare_preference([{"prompt": "Hi", "chosen": "Hello!", "rejected": "No."}])
    assert to_conversational(data) == 1
    assert data.rows[0] == {
        "prompt": _msgs(("user", "Hi")),
        "chosen": _msgs(("assistant", "Hello!")),
        "rejected": _msgs(("assistant", "No.")),
    }


def test_missing_rejected_column_is_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"prompt": "Hi", "chosen": "Hello!"}])
    with pytest.raises(SwiftDataError) as info:
        prepare_preference(path)
    message = str(info.value)
    assert "\n" not in message
    assert "no 'rejected' column" in message and "prefs.jsonl" in message


def test_kto_rows_for_a_paired_loss_say_so() -> None:
    with pytest.raises(SwiftDataError, match="unpaired prompt/completion/label rows .* --loss kto"):
        prepare_preference(tiny_dataset("kto"))


def test_identical_pair_names_the_row_and_is_skippable(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Bye."},
        {"prompt": "Hi", "chosen": "Same.", "rejected": "Same."},
        {"prompt": "Yo", "chosen": "Hey!", "rejected": "Meh."},
    ]
    path = _write(tmp_path, rows)
    with pytest.raises(SwiftDataError) as info:
        prepare_preference(path)
    assert str(info.value).startswith("prefs.jsonl line 2: chosen/rejected: chosen and rejected are identical")
    assert "--on-bad-rows skip" in str(info.value)
    data = prepare_preference(path, on_bad_rows="skip")
    assert len(data) == 2 and data.total == 3
    assert data.skipped[0].startswith("prefs.jsonl line 2:")
    assert "1 skipped" in data.summary()


def test_bad_fields_name_row_and_field(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Bye."},
        {"prompt": _msgs(("user", "Hi")), "chosen": _msgs(("bot", "Hello!")), "rejected": "Bye."},
    ]
    with pytest.raises(SwiftDataError, match=r"prefs.jsonl line 2: chosen\[0\].role: 'bot' is not one of"):
        prepare_preference(_write(tmp_path, rows))
    with pytest.raises(SwiftDataError, match=r"rows row 1: rejected: is empty"):
        prepare_preference([{"prompt": "Hi", "chosen": "Hello!", "rejected": "  "}])
    diverging = {
        "chosen": _msgs(("user", "A"), ("assistant", "x")),
        "rejected": _msgs(("user", "B"), ("assistant", "y")),
    }
    with pytest.raises(SwiftDataError, match="must share the conversation up to a user turn"):
        prepare_preference([diverging])


def test_kto_with_one_label_is_one_line(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": True} for i in range(5)]
    with pytest.raises(SwiftDataError) as info:
        prepare_preference(_write(tmp_path, rows, "kto.jsonl"), unpaired=True)
    message = str(info.value)
    assert "\n" not in message
    assert "all 5 rows are desirable (label true)" in message and "label false" in message


def test_kto_labels_and_swift_kto_rows() -> None:
    assert [parse_label(v) for v in (True, 0, 1, "false", "Desirable", "no")] == [True, False, True, False, True, False]
    rows = [
        {"messages": _msgs(("user", "Hi"), ("assistant", "Hello!")), "label": "true"},
        {"messages": _msgs(("user", "Hi"), ("assistant", "Go away.")), "label": 0},
    ]
    data = prepare_preference(rows, unpaired=True)
    assert data.format == "swift_kto" and label_counts(data) == (1, 1)
    assert data.rows[1] == {
        "prompt": _msgs(("user", "Hi")),
        "completion": _msgs(("assistant", "Go away.")),
        "label": False,
    }
    with pytest.raises(SwiftDataError, match=r"rows row 1: label: must be true or false"):
        prepare_preference([{"prompt": "a", "completion": "b", "label": "maybe"}], unpaired=True)


def test_lengths_use_the_longer_side(tiny_model: Path) -> None:
    from kernel_magics.train.model import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    templated = tokenizer.apply_chat_template(_msgs(("user", "Hi"), ("assistant", "A")))
    short = len(templated["input_ids"] if hasattr(templated, "keys") else templated)
    rows = [{"prompt": "Hi", "chosen": "A", "rejected": "Bye " * 40}, {"prompt": "Hi", "chosen": "A", "rejected": "B"}]
    data = prepare_preference(rows)
    to_conversational(data)
    limit = short + 2
    with pytest.raises(
        SwiftDataError, match=rf"rows row 1: \d+ tokens after the chat template, over max_length {limit}"
    ):
        check_preference_lengths(data, tokenizer, limit)
    lengths = check_preference_lengths(data, tokenizer, limit, on_bad_rows="skip")
    assert lengths == [short] and len(data) == 1 and data.rows[0]["rejected"][0]["content"] == "B"
    assert data.skipped[0].startswith("rows row 1:")
