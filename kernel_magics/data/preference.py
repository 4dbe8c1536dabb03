"""Preference data: detecting and validating paired (DPO / ORPO / SimPO) and unpaired (KTO) rows.

Paired source formats (detected from the columns):

* ``preference``: ``prompt`` / ``chosen`` / ``rejected``, each a string or a message list (an optional
  ``system`` string is put in front of the prompt)
* ``conversational``: ``chosen`` / ``rejected`` full conversations that share everything up to the
  final assistant reply (the shared prefix becomes the prompt)
* ``swift``: ms-swift's ``messages`` (ending with the chosen assistant reply) + ``rejected_response``

Unpaired source formats (KTO):

* ``kto``: ``prompt`` / ``completion`` / ``label`` (``label``: true for a desirable completion)
* ``swift_kto``: ms-swift's ``messages`` (ending with the assistant reply) + ``label``
* any paired format: each pair becomes one desirable and one undesirable row

Every row becomes TRL's preference type (``prompt``/``chosen``/``rejected``) or its unpaired type
(``prompt``/``completion``/``label``). Problems name the row and the field, e.g. ``prefs.jsonl line 7:
chosen and rejected are identical, so the pair teaches nothing``; bad rows are skipped and counted with
``on_bad_rows="skip"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import SwiftDataError
from .formats import RowError, check_messages
from .prepare import ON_BAD_ROWS, PreparedData, check_lengths
from .sources import read_rows

PAIRED_FORMATS = ("preference", "conversational", "swift")
UNPAIRED_FORMATS = ("kto", "swift_kto")
TRUE_LABELS = {"true", "1", "yes", "desirable", "good", "chosen"}
FALSE_LABELS = {"false", "0", "no", "undesirable", "bad", "rejected"}


def detect_paired_format(columns: set[str]) -> str | None:
    """The paired preference format implied by ``columns``, or None."""
    if "messages" in columns and ("rejected_response" in columns or "rejected_messages" in columns):
        return "swift"
    if "chosen" in columns and "rejected" in columns:
        return "preference" if "prompt" in columns else "conversational"
    return None


def detect_unpaired_format(columns: set[str]) -> str | None:
    """The unpaired (KTO) format implied by ``columns``, or None."""
    if "label" in columns and "completion" in columns:
        return "kto"
    if "label" in columns and "messages" in columns:
        return "swift_kto"
    return None


def paired_problem(columns: set[str], source: str) -> str:
    """Why rows with ``columns`` are not paired preference data (a one-line message)."""
    found = ", ".join(sorted(columns)) or "none"
    if "chosen" in columns and "rejected" not in columns:
        return (
            f"dataset {source} has a 'chosen' column but no 'rejected' column (columns: {found}); "
            "preference tuning needs both: add 'rejected', or use --loss kto with prompt/completion/label rows"
        )
    if "messages" in columns and "rejected_response" not in columns:
        return (
            f"dataset {source} has 'messages' but no 'rejected_response' column (columns: {found}); add the rejected "
            "reply per row, or pass prompt/chosen/rejected rows"
        )
    if detect_unpaired_format(columns):
        return (
            f"dataset {source} has unpaired prompt/completion/label rows (columns: {found}); these are for --loss kto, "
            "the paired losses need prompt/chosen/rejected rows"
        )
    return (
        f"dataset {source}: cannot tell its preference format from the columns ({found}); expected "
        "'prompt'+'chosen'+'rejected', conversational 'chosen'+'rejected', or 'messages'+'rejected_response'"
    )


# -- one row ----------------------------------------------------------------------------------------
def _text(value: Any, field: str) -> str:
    if value is None:
        raise RowError(field, "is missing")
    if not isinstance(value, str):
        raise RowError(field, f"must be a string or a message list, got {type(value).__name__}")
    if not value.strip():
        raise RowError(field, "is empty")
    return value


def _as_list(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _prompt(value: Any, system: Any, field: str = "prompt") -> str | list[dict[str, str]]:
    value = _as_list(value)
    if isinstance(value, list):
        if not value:
            raise RowError(field, "is an empty list")
        messages = check_messages([*value, {"role": "assistant", "content": "x"}], field)[:-1]
        if messages[-1]["role"] == "assistant":
            raise RowError(
                f"{field}[{len(messages) - 1}].role", "the prompt must end with a user turn, not 'assistant'"
            )
    else:
        messages = [{"role": "user", "content": _text(value, field)}]
        if system is None or (isinstance(system, str) and not system.strip()):
            return value
    if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    elif system is not None and not isinstance(system, str):
        raise RowError("system", f"must be a string, got {type(system).__name__}")
    return messages


def _reply(value: Any, field: str) -> str | list[dict[str, str]]:
    value = _as_list(value)
    if isinstance(value, list):
        messages = check_messages(value, field)
        if messages[-1]["role"] != "assistant":
            raise RowError(f"{field}[{len(messages) - 1}].role", "the reply must end with an assistant message")
        return messages
    return _text(value, field)


def _content(reply: str | list[dict[str, str]]) -> str:
    return reply if isinstance(reply, str) else "\n".join(m["content"] for m in reply)


def _check_pair(chosen: Any, rejected: Any) -> None:
    if _content(chosen).strip() == _content(rejected).strip():
        raise RowError("chosen/rejected", "chosen and rejected are identical, so the pair teaches nothing")


def _matching(prompt: Any, reply: Any) -> Any:
    """A string reply next to a message-list prompt becomes one assistant message (and vice versa)."""
    if isinstance(prompt, list) and isinstance(reply, str):
        return [{"role": "assistant", "content": reply}]
    if isinstance(prompt, str) and isinstance(reply, list):
        raise RowError("prompt", "is a string but the reply is a message list; make both strings or both lists")
    return reply


def _preference(row: dict[str, Any]) -> dict[str, Any]:
    prompt = _prompt(row.get("prompt"), row.get("system"))
    chosen = _matching(prompt, _reply(row.get("chosen"), "chosen"))
    rejected = _matching(prompt, _reply(row.get("rejected"), "rejected"))
    _check_pair(chosen, rejected)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _conversational(row: dict[str, Any]) -> dict[str, Any]:
    chosen = check_messages(_as_list(row.get("chosen")), "chosen")
    rejected = check_messages(_as_list(row.get("rejected")), "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == len(chosen) == len(rejected):
        raise RowError("chosen/rejected", "chosen and rejected are identical, so the pair teaches nothing")
    if shared == 0 or chosen[shared - 1]["role"] == "assistant":
        raise RowError(
            "chosen/rejected",
            "must share the conversation up to a user turn and differ only in the assistant replies after it",
        )
    for name, messages in (("chosen", chosen), ("rejected", rejected)):
        if shared >= len(messages) or messages[shared]["role"] != "assistant":
            raise RowError(f"{name}[{shared}]", "the reply after the shared prompt must be an assistant message")
    return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}


def _split_last_reply(messages: Any, field: str = "messages") -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    checked = check_messages(_as_list(messages), field)
    if checked[-1]["role"] != "assistant":
        raise RowError(f"{field}[{len(checked) - 1}].role", "the conversation must end with the assistant reply")
    if len(checked) < 2 or all(m["role"] == "system" for m in checked[:-1]):
        raise RowError(field, "needs a user turn before the assistant reply")
    return checked[:-1], checked[-1:]


def _swift(row: dict[str, Any]) -> dict[str, Any]:
    prompt, chosen = _split_last_reply(row.get("messages"))
    if row.get("rejected_messages") is not None and row.get("rejected_response") is None:
        other = _conversational({"chosen": [*prompt, *chosen], "rejected": row["rejected_messages"]})
        return other
    rejected = [{"role": "assistant", "content": _text(row.get("rejected_response"), "rejected_response")}]
    _check_pair(chosen, rejected)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def parse_label(value: Any, field: str = "label") -> bool:
    """A KTO label: booleans, 0/1 or words such as true/false, desirable/undesirable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_LABELS | FALSE_LABELS:
        return value.strip().lower() in TRUE_LABELS
    if value is None:
        raise RowError(field, "is missing; use true for a desirable completion, false for an undesirable one")
    raise RowError(field, f"must be true or false (desirable or not), got {value!r}")


def _kto(row: dict[str, Any]) -> dict[str, Any]:
    prompt = _prompt(row.get("prompt"), row.get("system"))
    completion = _matching(prompt, _reply(row.get("completion"), "completion"))
    return {"prompt": prompt, "completion": completion, "label": parse_label(row.get("label"))}


def _swift_kto(row: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = _split_last_reply(row.get("messages"))
    return {"prompt": prompt, "completion": completion, "label": parse_label(row.get("label"))}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "preference": _preference,
    "conversational": _conversational,
    "swift": _swift,
    "kto": _kto,
    "swift_kto": _swift_kto,
}


# -- a whole dataset --------------------------------------------------------------------------------
def prepare_preference(dataset: Any, *, unpaired: bool = False, on_bad_rows: str = "error") -> PreparedData:
    """Read and validate preference rows; ``unpaired=True`` gives KTO rows (``prompt``/``completion``/``label``).

    Raises :class:`SwiftDataError` naming the first bad row (or skips bad rows with ``on_bad_rows="skip"``).
    The result's ``kind`` is ``"preference"`` or ``"unpaired_preference"``.
    """
    if on_bad_rows not in ON_BAD_ROWS:
        raise SwiftDataError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got '{on_bad_rows}'")
    raw = read_rows(dataset)
    if not raw.rows:
        raise SwiftDataError(f"dataset {raw.source} is empty: it has no rows to train on")
    columns: set[str] = set()
    for row in raw.rows[:50]:
        columns.update(row)
    fmt = detect_unpaired_format(columns) if unpaired else None
    fmt = fmt or detect_paired_format(columns)
    if fmt is None:
        if unpaired:
            found = ", ".join(sorted(columns)) or "none"
            raise SwiftDataError(
                f"dataset {raw.source}: KTO needs 'prompt'+'completion'+'label' rows (or 'messages'+'label', or "
                f"paired prompt/chosen/rejected rows), got columns {found}"
            )
        raise SwiftDataError(paired_problem(columns, raw.source))
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    skipped: list[str] = []
    for row, label in zip(raw.rows, raw.labels, strict=True):
        try:
            converted = CONVERTERS[fmt](row)
        except RowError as exc:
            if on_bad_rows == "error":
                raise SwiftDataError(f"{label}: {exc} ({fmt} format); fix the row or pass --on-bad-rows skip") from None
            skipped.append(f"{label}: {exc}")
            continue
        if unpaired and fmt in PAIRED_FORMATS:
            rows.append({"prompt": converted["prompt"], "completion": converted["chosen"], "label": True})
            rows.append({"prompt": converted["prompt"], "completion": converted["rejected"], "label": False})
            labels += [f"{label} (chosen)", f"{label} (rejected)"]
            continue
        rows.append(converted)
        labels.append(label)
    if not rows:
        raise SwiftDataError(f"dataset {raw.source}: all {len(raw.rows)} rows are bad (first: {skipped[0]})")
    kind = "unpaired_preference" if unpaired else "preference"
    data = PreparedData(rows, labels, fmt, kind, raw.source, len(raw.rows), skipped)
    if unpaired:
        check_both_labels(data)
    return data


def label_counts(data: PreparedData) -> tuple[int, int]:
    """(desirable, undesirable) row counts of unpaired data."""
    good = sum(1 for r in data.rows if r["label"])
    return good, len(data.rows) - good


def check_both_labels(data: PreparedData) -> None:
    """KTO learns from the contrast: fail when every kept row has the same label."""
    good, bad = label_counts(data)
    if good and bad:
        return
    only = "desirable (label true)" if good else "undesirable (label false)"
    missing = "false" if good else "true"
    raise SwiftDataError(
        f"dataset {data.source}: all {len(data.rows)} rows are {only}; KTO needs both kinds, so add rows with "
        f"label {missing}"
    )


def to_conversational(data: PreparedData) -> int:
    """Turn string prompts and replies into user / assistant messages (in place), so the model's chat
    template formats them as it formats SFT conversations. Returns how many rows changed."""
    changed = 0
    reply_keys = ("completion",) if data.kind == "unpaired_preference" else ("chosen", "rejected")
    for row in data.rows:
        if isinstance(row["prompt"], str):
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
            changed += 1
        for key in reply_keys:
            if isinstance(row[key], str):
                row[key] = [{"role": "assistant", "content": row[key]}]
    return changed


def is_conversational(row: dict[str, Any]) -> bool:
    return isinstance(row.get("prompt"), list)


def preference_length(row: dict[str, Any], tokenizer: Any) -> int:
    """Tokens of the longer of prompt+chosen and prompt+rejected (or prompt+completion) after the template."""
    replies = [row[k] for k in ("chosen", "rejected", "completion") if k in row]
    longest = 0
    for reply in replies:
        if isinstance(row["prompt"], list):
            ids = tokenizer.apply_chat_template(row["prompt"] + reply, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            n = len(ids)
        else:
            n = len(tokenizer(row["prompt"] + reply)["input_ids"]) + 1
        longest = max(longest, n)
    return longest


def check_preference_lengths(
    data: PreparedData, tokenizer: Any, max_length: int | None, on_bad_rows: str = "error"
) -> list[int]:
    """Token count of each row's longest side after templating; over-long rows fail or are skipped."""
    lengths = check_lengths(data, tokenizer, max_length, on_bad_rows, measure=preference_length)
    if data.kind == "unpaired_preference":
        check_both_labels(data)
    return lengths


__all__ = [
    "PAIRED_FORMATS",
    "UNPAIRED_FORMATS",
    "check_both_labels",
    "check_preference_lengths",
    "detect_paired_format",
    "detect_unpaired_format",
    "label_counts",
    "parse_label",
    "prepare_preference",
    "to_conversational",
]
