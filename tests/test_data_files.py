"""Awkward data files get one line naming the file and line; a missing local path never goes to the Hub."""

from __future__ import annotations

import json

import pytest

from kernel_magics.data import sources
from kernel_magics.data.sources import read_rows
from kernel_magics.errors import SwiftDataError

ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def _line(row) -> bytes:
    return json.dumps(row, ensure_ascii=False).encode() + b"\n"


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message and len(message) <= 300, message
    return message


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_latin1_bytes_name_the_file_line_and_byte(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        text = _line(ROW) + _line(ROW) + _line({"text": "café"}).replace("é".encode(), "é".encode("latin-1"))
    else:
        text = b"prompt,completion\nhi,there\ncaf\xe9,ok\n"
    path.write_bytes(text)
    with pytest.raises(SwiftDataError) as info:
        read_rows(str(path))
    message = _one_line(info)
    assert str(path) in message and "line 3" in message and "0xe9" in message and "UTF-8" in message


def test_invalid_utf8_in_a_json_list_names_its_line(tmp_path):
    path = tmp_path / "rows.json"
    path.write_bytes(b'[\n  {"text": "ok"},\n  {"text": "bad \xff byte"}\n]\n')
    with pytest.raises(SwiftDataError) as info:
        read_rows(str(path))
    assert "line 3" in _one_line(info) and "0xff" in str(info.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_utf8_bom_is_read_as_the_start_of_the_file(tmp_path, suffix):
    path = tmp_path / f"bom{suffix}"
    if suffix == ".jsonl":
        body = _line(ROW) * 2
    elif suffix == ".json":
        body = json.dumps([ROW, ROW]).encode()
    else:
        body = b"prompt,completion\nhi,there\n"
    path.write_bytes(b"\xef\xbb\xbf" + body)
    rows = read_rows(str(path)).rows
    assert rows[0] == ({"prompt": "hi", "completion": "there"} if suffix == ".csv" else ROW)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_deeply_nested_json_is_one_line(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    deep = b"[" * 200_000 + b"]" * 200_000
    path.write_bytes(_line(ROW) + deep + b"\n" if suffix == ".jsonl" else b'[{"x": ' + deep + b"}]")
    with pytest.raises(SwiftDataError) as info:
        read_rows(str(path))
    message = _one_line(info)
    assert "nested too deeply" in message and (suffix == ".json" or "line 2" in message)


@pytest.mark.parametrize("name", ["data/train", "train_set", "./train", "~/no-such-km-data", "data/train.jsonl"])
def test_a_missing_local_path_is_never_sent_to_the_hub(tmp_path, monkeypatch, name):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    asked = []
    monkeypatch.setattr(sources, "_read_hub", lambda *args: asked.append(args))
    with pytest.raises(SwiftDataError) as info:
        read_rows(name)
    assert asked == [] and _one_line(info)


def test_an_org_name_id_still_goes_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    asked = []
    monkeypatch.setattr(sources, "_read_hub", lambda name, split: asked.append(name) or "rows")
    assert read_rows("someorg/some-dataset") == "rows" and asked == ["someorg/some-dataset"]
