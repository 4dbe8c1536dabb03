"""Reading evaluation / calibration rows and turning them into token ids.

Accepted datasets: a ``.jsonl`` / ``.json`` file, a list of dicts, or anything with ``to_list()``
(a ``datasets.Dataset``). Row formats, as in TRL:

* ``messages`` (or ShareGPT ``conversations``): a chat; the reference answer is the last assistant turn.
* ``prompt`` + ``completion`` (strings or message lists), also ``question``/``instruction``/``input`` +
  ``answer``/``response``/``output``: a prompt and its reference answer.
* ``text``: plain text (perplexity only).
* ``prompt`` + ``chosen`` + ``rejected``: a preference pair.

Perplexity is scored on the answer tokens only (all assistant turns of a chat, the completion of a
prompt row, every token of a text row). With ``chat_template=True`` (the default when the tokenizer
has one) a string prompt becomes a user turn and the answer an assistant turn; with ``False`` the
prompt and answer are concatenated as raw text and the answer ends with the eos token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwiftDataError

_PROMPT_KEYS = ("prompt", "question", "instruction", "input", "query")
_ANSWER_KEYS = ("completion", "answer", "response", "output", "target")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class Example:
    """One row, normalised: a chat (``messages``) or a ``prompt`` with an ``answer``, or ``text``."""

    messages: list[dict[str, str]] | None = None  # whole conversation (chat rows)
    prompt: list[dict[str, str]] | str | None = None
    answer: str | None = None
    text: str | None = None
    chosen: str | None = None
    rejected: str | None = None

    @property
    def has_reference(self) -> bool:
        return self.prompt is not None and self.answer is not None


def load_rows(dataset: Any, where: str = "dataset") -> list[dict[str, Any]]:
    """Rows of a jsonl/json file, a list of dicts or a ``datasets.Dataset``."""
    if hasattr(dataset, "to_list"):
        return list(dataset.to_list())
    if isinstance(dataset, (list, tuple)):
        for i, row in enumerate(dataset):
            if not isinstance(row, dict):
                raise SwiftDataError(f"{where} row {i} is {type(row).__name__}, expected a dict of fields")
        return [dict(r) for r in dataset]
    if not isinstance(dataset, (str, os.PathLike)):
        raise SwiftDataError(f"{where}: expected a .jsonl/.json path or a list of dicts, got {type(dataset).__name__}")
    path = Path(os.fspath(dataset)).expanduser()
    if not path.is_file():
        raise SwiftDataError(f"{where} file {path} does not exist; pass a .jsonl or .json file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SwiftDataError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        return load_rows(data, str(path))
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SwiftDataError(
                f"{path}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise SwiftDataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    if not rows:
        raise SwiftDataError(f"{path} has no rows")
    return rows


def holdout_indices(rows: list[dict[str, Any]], holdout: float, seed: int = 42) -> list[int]:
    """Indices of the held-out rows: the rows ``km.sft(eval_split=holdout, seed=seed)`` evaluates on and
    never trains on (chosen by content, one copy of each; see :mod:`kernel_magics.data.split`)."""
    from ..data.split import split_indices

    if not 0 < holdout < 1:
        raise SwiftDataError(f"holdout must be a fraction between 0 and 1, got {holdout}")
    return split_indices(rows, holdout, seed)[1]


def select_rows(
    rows: list[dict[str, Any]], holdout: float | None = None, limit: int | None = None, seed: int = 42
) -> list[dict[str, Any]]:
    """The held-out share of ``rows`` (see :func:`holdout_indices`), then the first ``limit`` of them."""
    if holdout is not None:
        rows = [rows[i] for i in holdout_indices(rows, holdout, seed)]
    if limit is not None:
        if limit < 1:
            raise SwiftDataError(f"limit must be >= 1, got {limit}")
        rows = rows[:limit]
    return rows


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise SwiftDataError(f"{where}: expected a list of {{role, content}} messages")
    out = []
    for m in value:
        role = m.get("role", _SHAREGPT_ROLES.get(str(m.get("from", "")), m.get("from")))
        content = m.get("content", m.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            raise SwiftDataError(f"{where}: every message needs a 'role' and a string 'content'")
        out.append({"role": _SHAREGPT_ROLES.get(role, role), "content": content})
    return out


def to_example(row: dict[str, Any], where: str) -> Example:
    """Normalise one row (see the module docstring for the formats)."""
    chat = row.get("messages", row.get("conversations"))
    if chat is not None:
        messages = _messages(chat, where)
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise SwiftDataError(f"{where}: the conversation has no assistant turn to score")
        return Example(messages=messages, prompt=messages[:last], answer=messages[last]["content"])
    if "chosen" in row and "rejected" in row:
        prompt = row.get("prompt", "")
        prompt = _messages(prompt, where) if isinstance(prompt, list) else str(prompt)
        chosen, rejected = row["chosen"], row["rejected"]
        if isinstance(chosen, list):
            chosen = _messages(chosen, where)[-1]["content"]
        if isinstance(rejected, list):
            rejected = _messages(rejected, where)[-1]["content"]
        return Example(prompt=prompt, answer=str(chosen), chosen=str(chosen), rejected=str(rejected))
    prompt_key = next((k for k in _PROMPT_KEYS if isinstance(row.get(k), (str, list))), None)
    answer_key = next((k for k in _ANSWER_KEYS if k in row and k != prompt_key), None)
    if prompt_key is not None and answer_key is not None:
        prompt = row[prompt_key]
        if prompt_key == "instruction" and isinstance(row.get("input"), str) and row["input"].strip():
            prompt = f"{prompt}\n\n{row['input']}"
        prompt = _messages(prompt, where) if isinstance(prompt, list) else str(prompt)
        answer = row[answer_key]
        if isinstance(answer, list):
            answer = _messages(answer, where)[-1]["content"]
        return Example(prompt=prompt, answer=str(answer))
    if isinstance(row.get("text"), str):
        return Example(text=row["text"])
    raise SwiftDataError(
        f"{where}: unknown row format with keys {sorted(row)}; use messages, prompt+completion, "
        "question+answer, text or prompt+chosen+rejected"
    )


def to_examples(rows: list[dict[str, Any]], where: str = "dataset") -> list[Example]:
    return [to_example(row, f"{where} row {i}") for i, row in enumerate(rows)]


def as_chat(prompt: list[dict[str, str]] | str) -> list[dict[str, str]]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def uses_template(tokenizer: Any, chat_template: bool | None) -> bool:
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not has:
        raise SwiftDataError("chat_template=True but the tokenizer has no chat template; pass chat_template=False")
    return has if chat_template is None else bool(chat_template)


def _ids(value: Any) -> list[int]:
    if hasattr(value, "keys") and "input_ids" in value:
        value = value["input_ids"]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if value and isinstance(value[0], list):
        value = value[0]
    return list(value)


def _chat_scored(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(ids, mask of assistant tokens) of a chat, via the template's generation markers or, without
    them, by rendering the prefix before each assistant turn."""
    try:
        enc = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = _ids(enc["input_ids"]), _ids(enc.get("assistant_masks") or [])
        if any(mask):
            return ids, mask
    except (ValueError, TypeError, KeyError):
        pass
    ids = _ids(tokenizer.apply_chat_template(messages, tokenize=True))
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_ids(tokenizer.apply_chat_template(messages[:i], tokenize=True, add_generation_prompt=True)))
        end = len(_ids(tokenizer.apply_chat_template(messages[: i + 1], tokenize=True)))
        for t in range(min(start, len(ids)), min(end, len(ids))):
            mask[t] = 1
    return ids, mask


def scored_ids(
    tokenizer: Any, example: Example, template: bool, answer: str | None = None
) -> tuple[list[int], list[int]]:
    """(input ids, mask of the tokens whose likelihood counts) for perplexity / preference scoring."""
    eos = tokenizer.eos_token_id
    if example.text is not None:
        ids = _ids(tokenizer(example.text, add_special_tokens=True)) + ([eos] if eos is not None else [])
        return ids, [0] + [1] * (len(ids) - 1)
    answer = example.answer if answer is None else answer
    if example.messages is not None and answer == example.answer:
        return _chat_scored(tokenizer, example.messages)
    if template or isinstance(example.prompt, list):
        return _chat_scored(tokenizer, as_chat(example.prompt) + [{"role": "assistant", "content": answer}])
    prompt_ids = _ids(tokenizer(str(example.prompt), add_special_tokens=True))
    answer_ids = _ids(tokenizer(answer, add_special_tokens=False)) + ([eos] if eos is not None else [])
    return prompt_ids + answer_ids, [0] * len(prompt_ids) + [1] * len(answer_ids)


def prompt_ids(tokenizer: Any, example: Example, template: bool) -> list[int]:
    """Token ids of the prompt a model continues when generating an answer."""
    if template or isinstance(example.prompt, list):
        return _ids(tokenizer.apply_chat_template(as_chat(example.prompt), tokenize=True, add_generation_prompt=True))
    return _ids(tokenizer(str(example.prompt), add_special_tokens=True))


def render_text(tokenizer: Any, example: Example, template: bool) -> str:
    """One calibration text per row (the chat rendered with its template)."""
    if example.text is not None:
        return example.text
    if example.messages is not None and template:
        return tokenizer.apply_chat_template(example.messages, tokenize=False)
    if template or isinstance(example.prompt, list):
        chat = as_chat(example.prompt) + [{"role": "assistant", "content": example.answer or ""}]
        return tokenizer.apply_chat_template(chat, tokenize=False)
    return f"{example.prompt}{example.answer or ''}"
