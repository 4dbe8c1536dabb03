"""Evaluation: perplexity and simple task metrics on held-out rows, and side-by-side generations.

Metrics (one DataFrame row per model and metric):

* ``perplexity``: ``exp(total NLL / scored tokens)`` over the answer tokens of every row (token-weighted:
  long answers count more), computed with teacher forcing in float32 on the CPU.
* ``exact_match`` / ``contains``: greedy generation for rows with a prompt and a reference answer;
  the normalised reply equals / contains the normalised reference (case-folded, spaces collapsed).
* ``preference_accuracy``: share of ``prompt/chosen/rejected`` rows where the chosen answer gets the
  higher mean log-likelihood per token (length-normalised, as SimPO's implicit reward).
* ``lm_eval:TASK``: a task of EleutherAI's lm-evaluation-harness, when the ``lm-eval`` package is installed.
"""

from __future__ import annotations

import importlib.util
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..device import free_memory
from ..errors import SwiftConfigError, SwiftDataError, SwiftUsageError, did_you_mean
from .loading import inference_device, load_for_inference, model_specs
from .rows import Example, load_rows, prompt_ids, scored_ids, select_rows, to_examples, uses_template

METRICS = ("perplexity", "exact_match", "contains", "preference_accuracy")
LM_EVAL_PREFIX = "lm_eval:"
MAX_LENGTH = 2048  # longest scored sequence in tokens


def normalize_answer(text: str) -> str:
    """Case-folded, NFKC-normalised text with runs of whitespace collapsed and ends stripped."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def check_metrics(metrics: Iterable[str] | str) -> list[str]:
    """Validate metric names (``"a,b"`` or a list); unknown names fail with the closest valid one."""
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m and m.strip()]
    if not names:
        raise SwiftUsageError(f"no metrics given; use some of {', '.join(METRICS)} or lm_eval:TASK")
    for name in names:
        if name in METRICS:
            continue
        if name.startswith(LM_EVAL_PREFIX) and name[len(LM_EVAL_PREFIX) :]:
            if importlib.util.find_spec("lm_eval") is None:
                raise SwiftConfigError(f"metric '{name}' needs the lm-eval package: pip install lm-eval")
            continue
        raise SwiftUsageError(f"unknown metric '{name}'{did_you_mean(name, METRICS)}; use {', '.join(METRICS)}")
    return names


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def sequence_logprobs(
    model: Any,
    sequences: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    batch_size: int = 8,
    max_length: int = MAX_LENGTH,
) -> list[tuple[float, int]]:
    """(sum of log p(token), number of tokens) over the masked tokens of each sequence.

    Token ``t`` is scored by the logits at ``t - 1`` (so the first token is never scored); sequences
    longer than ``max_length`` are cut at the end.
    """
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        seqs = [(sequences[i][0][:max_length], sequences[i][1][:max_length]) for i in chunk]
        width = max(len(ids) for ids, _ in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        scored = torch.zeros((len(seqs), width), dtype=torch.bool)
        for row, (tokens, mask) in enumerate(seqs):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            attention[row, : len(tokens)] = 1
            scored[row, : len(mask)] = torch.tensor(mask, dtype=torch.bool)
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:].to(device)
        token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        keep = scored[:, 1:].to(device)
        sums = (token_logp * keep).sum(dim=1).tolist()
        counts = keep.sum(dim=1).tolist()
        for i, s, c in zip(chunk, sums, counts, strict=True):
            out[i] = (float(s), int(c))
    return out


def generate_replies(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> list[str]:
    """Greedy replies (decoded without special tokens) to prompts given as token ids."""
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    base_config = getattr(model, "generation_config", None)
    eos = getattr(base_config, "eos_token_id", None) or tokenizer.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, eos_token_id=eos)
    replies: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):  # left padding: every prompt ends where generation starts
            tokens = prompts[i]
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            attention[row, width - len(tokens) :] = 1
        with torch.no_grad():
            output = model.generate(
                input_ids=ids.to(device), attention_mask=attention.to(device), generation_config=config
            )
        for row, i in enumerate(chunk):
            replies[i] = tokenizer.decode(output[row, width:], skip_special_tokens=True).strip()
    return replies


def evaluate(
    model: Any = None,
    dataset: Any = None,
    metrics: Sequence[str] | str = ("perplexity",),
    adapter: Any = None,
    holdout: float | None = None,
    limit: int | None = None,
    seed: int = 42,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    max_length: int = MAX_LENGTH,
    chat_template: bool | None = None,
    tasks: Sequence[str] | str | None = None,
    num_fewshot: int | None = None,
    served_model: str | None = None,
    tokenizer: Any = None,
) -> Any:
    """Score one or more models on a dataset; returns a DataFrame ``model, metric, value, count, source``.

    With ``tasks`` (lm-eval task names, task YAML paths or folders) the models run lm-eval benchmarks
    instead and the result is a :class:`~kernel_magics.bench.results.BenchmarkResult` (one model) or a
    :class:`~kernel_magics.bench.api.BenchmarkComparison` (several; the first is the baseline). ``model``
    may then be a server URL (``served_model`` picks the served name, ``tokenizer`` its tokenizer folder).

    Args:
        model: a model (``"tiny"``, a folder, a hub id), an adapter folder or run, a ``(base, adapter)``
            pair, a list of those, or a dict ``{label: model}``.
        dataset: a jsonl/json file, a list of dicts or a ``datasets.Dataset`` (see
            :mod:`kernel_magics.export.rows` for the row formats).
        metrics: any of ``perplexity``, ``exact_match``, ``contains``, ``preference_accuracy``,
            ``lm_eval:TASK``.
        adapter: a LoRA adapter applied to ``model`` (when ``model`` is a single base).
        holdout: score only this held-out fraction of the rows (seeded shuffle), e.g. ``0.1``.
        limit: score at most this many rows.
        max_new_tokens: longest generated reply for the generation metrics.
        chat_template: wrap prompts in the tokenizer's chat template (default: when it has one).
        tasks, num_fewshot: lm-eval tasks and their few-shot count (default: each task's own); ``limit``
            then caps the questions per task and ``seed`` seeds lm-eval (few-shot sampling included).

    ``count`` is the number of scored tokens for perplexity and of rows for the other metrics.
    """
    import pandas as pd

    if model is None:
        from ..config import settings

        model = settings.default_model
    if tasks is not None or (isinstance(model, str) and model.startswith(("http://", "https://"))):
        from ..bench.api import benchmark

        return benchmark(model, tasks or [], adapter, limit, num_fewshot, batch_size, seed, served_model, tokenizer)
    names = check_metrics(metrics)
    needs_rows = [n for n in names if not n.startswith(LM_EVAL_PREFIX)]
    examples: list[Example] = []
    if needs_rows:
        if dataset is None:
            raise SwiftUsageError("evaluate needs a dataset: a .jsonl file or a list of rows (dataset=...)")
        examples = to_examples(select_rows(load_rows(dataset), holdout, limit, seed))
    if batch_size < 1 or max_new_tokens < 1 or max_length < 2:
        raise SwiftConfigError("batch_size and max_new_tokens must be >= 1 and max_length >= 2")
    specs = model_specs(model, adapter)
    device, dtype = inference_device()
    records: list[dict[str, Any]] = []
    for spec in specs:
        loaded, tokenizer = load_for_inference(spec, device, dtype)
        scoring = Scoring(uses_template(tokenizer, chat_template), max_new_tokens, batch_size, max_length, limit)
        for name in names:
            value, count = _metric(name, loaded, tokenizer, examples, scoring)
            if isinstance(value, dict):  # lm-eval returns several numbers per task
                for sub, number in value.items():
                    records.append({"model": spec.label, "metric": f"{name}:{sub}", "value": number, "count": count})
            else:
                records.append({"model": spec.label, "metric": name, "value": value, "count": count})
        for record in records:
            record.setdefault("source", spec.source)
        del loaded, tokenizer
        free_memory()
    return pd.DataFrame.from_records(records, columns=["model", "metric", "value", "count", "source"])


@dataclass(frozen=True)
class Scoring:
    """How every metric of one model is computed."""

    template: bool  # prompts wrapped in the tokenizer's chat template
    max_new_tokens: int  # longest generated reply (exact_match, contains)
    batch_size: int
    max_length: int  # longest scored sequence (perplexity, preference_accuracy)
    limit: int | None  # questions per lm-eval task


def _metric(name: str, model: Any, tokenizer: Any, examples: list[Example], scoring: Scoring) -> tuple[Any, int]:
    pad = _pad_id(tokenizer)
    if name == "perplexity":
        sequences = [scored_ids(tokenizer, ex, scoring.template) for ex in examples]
        scores = sequence_logprobs(model, sequences, pad, scoring.batch_size, scoring.max_length)
        tokens = sum(c for _, c in scores)
        if tokens == 0:
            raise SwiftDataError("no answer tokens to score for perplexity; check the rows have answers")
        return math.exp(-sum(s for s, _ in scores) / tokens), tokens
    if name == "preference_accuracy":
        pairs = [ex for ex in examples if ex.chosen is not None and ex.rejected is not None]
        if not pairs:
            raise SwiftDataError("preference_accuracy needs prompt/chosen/rejected rows")
        sequences = []
        for ex in pairs:
            sequences += [
                scored_ids(tokenizer, ex, scoring.template, ex.chosen),
                scored_ids(tokenizer, ex, scoring.template, ex.rejected),
            ]
        scores = sequence_logprobs(model, sequences, pad, scoring.batch_size, scoring.max_length)
        mean = [total / max(count, 1) for total, count in scores]  # per token: longer answers are not penalised
        wins = sum(1 for i in range(0, len(mean), 2) if mean[i] > mean[i + 1])
        return wins / len(pairs), len(pairs)
    if name in ("exact_match", "contains"):
        rows = [ex for ex in examples if ex.has_reference]
        if not rows:
            raise SwiftDataError(f"{name} needs rows with a prompt and a reference answer (e.g. prompt/answer)")
        prompts = [prompt_ids(tokenizer, ex, scoring.template) for ex in rows]
        replies = generate_replies(model, tokenizer, prompts, scoring.max_new_tokens, scoring.batch_size)
        hits = 0
        for ex, reply in zip(rows, replies, strict=True):
            got, want = normalize_answer(reply), normalize_answer(ex.answer or "")
            hits += got == want if name == "exact_match" else (want in got)
        return hits / len(rows), len(rows)
    return _lm_eval(name[len(LM_EVAL_PREFIX) :], model, tokenizer, scoring.batch_size, scoring.limit)


def _lm_eval(task: str, model: Any, tokenizer: Any, batch_size: int, limit: int | None) -> tuple[dict[str, float], int]:
    """Run one lm-evaluation-harness task on the loaded model (needs ``pip install lm-eval``)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from ..bench.registry import hub_dataset_error, select_tasks

    selection = select_tasks([task])  # packaged and local tasks too; a Hub task offline is one line
    try:
        result = simple_evaluate(
            model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size),
            tasks=selection.names,
            limit=limit,
            task_manager=selection.manager,
        )
    except (KeyError, ValueError) as exc:
        raise SwiftConfigError(f"lm-eval task '{task}' failed: {exc}".splitlines()[0]) from None
    except (ConnectionError, OSError) as exc:
        raise (hub_dataset_error(selection, exc) or exc) from None
    numbers = {
        key.split(",")[0]: float(value)
        for key, value in (result or {}).get("results", {}).get(task, {}).items()
        if isinstance(value, (int, float)) and "stderr" not in key
    }
    samples = (result or {}).get("n-samples", {}).get(task, {}).get("effective", 0)
    return numbers, int(samples)


def compare(
    models: Any = None,
    prompts: Sequence[Any] | str | None = None,
    max_new_tokens: int = 64,
    system: str | None = None,
    chat_template: bool | None = None,
    batch_size: int = 8,
) -> Any:
    """Run the same prompts through several models (greedy) and return a side-by-side DataFrame.

    ``models``: a list of models (names, folders, adapter folders, runs or ``(base, adapter)`` pairs, or
    ``"LABEL=SPEC"`` strings) or a dict ``{label: model}``; the index is the prompt, one column per model.
    ``system`` adds a system message to every prompt (chat template only).
    """
    import pandas as pd

    if not models:
        raise SwiftUsageError("compare needs models, e.g. km.compare(['tiny', 'runs/<id>/adapter'], prompts)")
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise SwiftUsageError("compare needs at least one prompt")
    specs = model_specs(models if isinstance(models, (list, dict)) else [models])
    device, dtype = inference_device()
    labels = [p if isinstance(p, str) else str(p[-1].get("content", "")) for p in prompts]
    table: dict[str, list[str]] = {}
    for spec in specs:
        loaded, tokenizer = load_for_inference(spec, device, dtype)
        template = uses_template(tokenizer, chat_template)
        ids = []
        for prompt in prompts:
            chat = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            if system and template:
                chat = [{"role": "system", "content": system}, *chat]
            ex = Example(prompt=chat if template or isinstance(prompt, list) else str(prompt))
            ids.append(prompt_ids(tokenizer, ex, template))
        table[spec.label] = generate_replies(loaded, tokenizer, ids, max_new_tokens, batch_size)
        del loaded, tokenizer
        free_memory()
    frame = pd.DataFrame(table, index=pd.Index(labels, name="prompt"))
    frame.attrs["sources"] = {spec.label: spec.source for spec in specs}
    return frame
