"""Reading a dataset from wherever the user has it into plain rows, remembering where each row came from.

Accepted: a file path (``.jsonl``, ``.json``, ``.csv``, ``.parquet``), a folder written by
``datasets.Dataset.save_to_disk``, a hub dataset id (taken from the local ``datasets`` cache when
offline), a ``datasets.Dataset``, a pandas ``DataFrame`` or a list of dicts. Every row keeps a label
("train.jsonl line 7", "rows row 3") so validation errors can say exactly where a problem is.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwiftDataError

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")  # org/name: nothing else is sent to the Hub
BOM = "\ufeff"


@dataclass
class RawRows:
    """Rows as read, their source name and a label per row for messages."""

    rows: list[dict[str, Any]]
    source: str
    labels: list[str]

    def __len__(self) -> int:
        return len(self.rows)


def read_rows(dataset: Any, split: str = "train") -> RawRows:
    """Read ``dataset`` (path, folder, hub id, Dataset, DataFrame or list of dicts) into rows."""
    if dataset is None:
        raise SwiftDataError("no dataset given; pass --dataset PATH (jsonl, json, csv, parquet) or a hub dataset id")
    if isinstance(dataset, (str, os.PathLike)):
        return _read_path_or_id(str(dataset), split)
    if isinstance(dataset, list):
        return _from_list(dataset, "rows")
    if type(dataset).__name__ == "DataFrame" and hasattr(dataset, "to_dict"):
        return _from_list(dataset.to_dict(orient="records"), "DataFrame")
    if hasattr(dataset, "column_names") and hasattr(dataset, "to_list"):  # datasets.Dataset
        return _from_list(dataset.to_list(), "Dataset")
    if hasattr(dataset, "keys") and hasattr(dataset, "column_names"):  # DatasetDict
        if split not in dataset:
            raise SwiftDataError(f"the DatasetDict has no '{split}' split (it has {', '.join(dataset.keys())})")
        return _from_list(dataset[split].to_list(), f"DatasetDict[{split}]")
    raise SwiftDataError(
        f"dataset of type {type(dataset).__name__} is not supported; pass a path, a hub id, a datasets.Dataset, "
        "a pandas DataFrame or a list of dicts"
    )


def _from_list(items: list[Any], source: str) -> RawRows:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise SwiftDataError(f"{source} row {index + 1}: expected a dict of fields, got {type(item).__name__}")
    return RawRows(list(items), source, [f"{source} row {i + 1}" for i in range(len(items))])


def _read_path_or_id(text: str, split: str) -> RawRows:
    path = Path(text).expanduser()
    if path.is_dir():
        return _read_saved_dataset(path, split)
    if path.is_file():
        return _read_file(path)
    if _looks_local(text, path):
        raise SwiftDataError(f"dataset file {text} does not exist; check the path (relative to {Path.cwd()})")
    if _HUB_ID.match(text):
        return _read_hub(text, split)
    raise SwiftDataError(
        f"dataset '{text}' is neither a file, a folder nor a hub dataset id (org/name); check the path"
    )


def _looks_local(text: str, path: Path) -> bool:
    """A path the user meant on this machine: a data file suffix, a path form, or a folder that exists here."""
    if path.suffix.lower() in FILE_SUFFIXES or text.startswith((".", "~", "/")) or "\\" in text:
        return True
    return not _HUB_ID.match(text) and os.sep in text or Path(text.split("/")[0]).expanduser().is_dir()


def _read_file(path: Path) -> RawRows:
    suffix = path.suffix.lower()
    name = path.name
    if path.stat().st_size == 0:
        raise SwiftDataError(f"dataset file {path} is empty; it needs at least one row")
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        text = _decode(path.read_bytes(), path, 1).removeprefix(BOM)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith("{") and "\n{" in text:  # JSON lines saved as .json
                return _read_jsonl(path)
            raise SwiftDataError(f"{path}: not valid JSON at line {exc.lineno} ({exc.msg}); fix the file") from None
        except RecursionError:
            raise SwiftDataError(f"{path}: the JSON is nested too deeply to read; flatten the rows") from None
        if isinstance(data, dict):
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) == 1 and all(isinstance(r, dict) for r in data[lists[0]]):
                data = data[lists[0]]
        if not isinstance(data, list):
            raise SwiftDataError(f"{path}: expected a JSON list of rows (or JSON lines), got {type(data).__name__}")
        raw = _from_list(data, name)
        return RawRows(raw.rows, str(path), raw.labels)
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        if suffix == ".csv":
            with open(path, "rb") as fh:
                for number, line in enumerate(fh, start=1):
                    _decode(line, path, number)
        try:
            frame = (
                pd.read_csv(path, keep_default_na=False, encoding="utf-8-sig")
                if suffix == ".csv"
                else pd.read_parquet(path)
            )
        except Exception as exc:  # noqa: BLE001 - pandas raises many types; the user needs one line
            raise SwiftDataError(f"{path}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from None
        rows = frame.to_dict(orient="records")
        offset = 2 if suffix == ".csv" else 1  # csv: line 1 is the header
        unit = "line" if suffix == ".csv" else "row"
        return RawRows(rows, str(path), [f"{name} {unit} {i + offset}" for i in range(len(rows))])
    raise SwiftDataError(f"{path}: unsupported file type '{suffix}'; use .jsonl, .json, .csv or .parquet")


def _read_jsonl(path: Path) -> RawRows:
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = _decode(raw, path, number)
            if number == 1:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SwiftDataError(
                    f"{path} line {number}: malformed JSON ({exc.msg} at column {exc.colno}); fix or delete that line"
                ) from None
            except RecursionError:
                raise SwiftDataError(f"{path} line {number}: the JSON is nested too deeply to read") from None
            if not isinstance(row, dict):
                raise SwiftDataError(f"{path} line {number}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
            labels.append(f"{path.name} line {number}")
    return RawRows(rows, str(path), labels)


def _decode(data: bytes, path: Path, first_line: int) -> str:
    """``data`` as UTF-8; a one-line error naming the line and column of the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SwiftDataError(
            f"{path} line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}, e.g. Latin-1 text); "
            "save the file as UTF-8"
        ) from None


def _read_saved_dataset(path: Path, split: str) -> RawRows:
    if not any((path / n).exists() for n in ("dataset_info.json", "state.json", "dataset_dict.json")):
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES)
        if len(files) == 1:
            return _read_file(files[0])
        raise SwiftDataError(
            f"{path} is a folder but not one written by datasets.save_to_disk; pass one of its data files instead"
        )
    from datasets import DatasetDict, load_from_disk

    loaded = load_from_disk(str(path))
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise SwiftDataError(f"{path} has no '{split}' split (it has {', '.join(loaded.keys())})")
        loaded = loaded[split]
    raw = _from_list(loaded.to_list(), path.name)
    return RawRows(raw.rows, str(path), raw.labels)


def _read_hub(name: str, split: str) -> RawRows:
    from ..hub import is_offline

    try:
        from datasets import load_dataset

        data = load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001
        if is_offline():
            raise SwiftDataError(
                f"dataset '{name}' is not a local file and not in the datasets cache, and HF_HUB_OFFLINE=1 is set; "
                "pass a local file or unset HF_HUB_OFFLINE"
            ) from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SwiftDataError(f"dataset '{name}' could not be loaded from the hub: {first}") from None
    raw = _from_list(data.to_list(), name)
    return RawRows(raw.rows, name, raw.labels)
