"""Per-request inputs checked before a request joins a batch: logit biases and JSON schemas.

Both engines use these checks (the transformers engine in ``replies.py``, the vLLM launcher in
``engines/vllm_main.py``), so one request's bad value is a 400 naming its field, never a failure of
the batch it would have shared with other requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from .protocol import APIError

LOGIT_BIAS_RANGE = 100.0  # OpenAI: each bias lies in [-100, 100]

# Keywords xgrammar (0.2.x) compiles but does not enforce: a reply may break them. Each is shown to be
# ignored by xgrammar itself in tests/test_serve_isolation.py.
UNENFORCED_KEYWORDS = (
    "not",
    "if",
    "then",
    "else",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
)
# Keywords enforced with one subschema but not with several (xgrammar: "allOf ... still ongoing";
# oneOf's "exactly one" is enforced as anyOf's "at least one").
SINGLE_ONLY_KEYWORDS = ("allOf", "oneOf")

# Where subschemas sit inside a schema (JSON Schema 2020-12 and draft 7)
_ONE_SCHEMA = (
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "propertyNames",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
)
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def check_logit_bias(bias: Mapping[str, Any] | None, vocab_size: int | None) -> dict[int, float]:
    """``logit_bias`` as token id -> bias, or a 400: ids are decimal, 0 <= id < ``vocab_size``;
    biases are finite numbers in [-100, 100]."""
    checked: dict[int, float] = {}
    for key, value in (bias or {}).items():
        text = str(key).strip()
        if not text.isdecimal():
            raise APIError(f"logit_bias keys must be token ids (0, 1, 2, ...), got {text[:40]!r}", param="logit_bias")
        token = int(text)
        if vocab_size is not None and token >= vocab_size:
            raise APIError(
                f"logit_bias: token id {text[:40]} is outside this model's vocabulary (0 to {vocab_size - 1})",
                param="logit_bias",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise APIError(f"logit_bias: the bias of token {token} must be a number", param="logit_bias")
        if not math.isfinite(value) or abs(value) > LOGIT_BIAS_RANGE:
            raise APIError(
                f"logit_bias: the bias of token {token} must lie between -100 and 100, got {str(value)[:30]}",
                param="logit_bias",
            )
        checked[token] = float(value)
    return checked


def check_schema(schema: Any, param: str) -> None:
    """A 400 naming the keyword when ``schema`` is not a valid JSON schema (checked against its
    meta-schema) or uses a keyword the grammar backend cannot enforce."""
    if not isinstance(schema, dict):
        raise APIError(f"{param}: a JSON schema must be an object, got {type(schema).__name__}", param=param)
    _check_meta_schema(schema, param)
    for where, node in _subschemas(schema, "#"):
        for keyword in UNENFORCED_KEYWORDS:
            if keyword in node and not (keyword == "uniqueItems" and node[keyword] is False):
                raise _unenforced(param, keyword, where)
        for keyword in SINGLE_ONLY_KEYWORDS:
            if isinstance(node.get(keyword), list) and len(node[keyword]) > 1:
                raise _unenforced(param, keyword, where, f" with more than one subschema (got {len(node[keyword])})")
        if ("pattern" in node or "format" in node) and ("minLength" in node or "maxLength" in node):
            raise _unenforced(param, "minLength/maxLength", where, " together with pattern or format")


def _unenforced(param: str, keyword: str, where: str, detail: str = "") -> APIError:
    return APIError(
        f"{param}: the JSON schema keyword '{keyword}'{detail} at {where} cannot be enforced by this server's "
        "constrained decoding (xgrammar); rewrite the schema without it",
        param=param,
        code="unsupported_schema",
    )


def _check_meta_schema(schema: dict[str, Any], param: str) -> None:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        keyword = next((str(p) for p in reversed(exc.absolute_path) if isinstance(p, str)), str(exc.validator))
        raise APIError(
            f"{param}: invalid JSON schema: keyword '{keyword}' at #/{path}: {exc.message[:150]}",
            param=param,
            code="invalid_schema",
        ) from None
    except RecursionError:
        raise APIError(f"{param}: the JSON schema is nested too deeply", param=param) from None


def _subschemas(node: Any, where: str, depth: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside ``node`` with its JSON pointer (booleans are schemas too, and skipped)."""
    if not isinstance(node, dict) or depth > 64:
        return
    yield where, node
    for key in _ONE_SCHEMA:
        if isinstance(node.get(key), dict):
            yield from _subschemas(node[key], f"{where}/{key}", depth + 1)
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for i, item in enumerate(node[key]):
                yield from _subschemas(item, f"{where}/{key}/{i}", depth + 1)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            for name, item in node[key].items():
                yield from _subschemas(item, f"{where}/{key}/{name}", depth + 1)
