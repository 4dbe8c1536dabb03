"""Run lm-eval tasks on a model in this process or on a served model through its OpenAI API.

In process the model is loaded like :func:`kernel_magics.export.evaluate.evaluate` loads it (a base, a
base + LoRA adapter unmerged, or a merged folder; on the selected device, fp32 on the CPU) and handed to
lm-eval's ``HFLM``. A server URL goes through lm-eval's ``local-completions`` model: log-likelihoods
come from ``/v1/completions`` with ``echo`` + ``logprobs`` on token-id prompts, so the served weights
are scored on exactly the tokens the in-process run scores.

Every run fixes lm-eval's seeds (few-shot sampling included) to ``seed``, so runs compare fairly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import SwiftConfigError, SwiftError, SwiftUsageError
from .registry import TaskSelection, hub_dataset_error, select_tasks
from .results import BenchmarkResult, scores_from

DEFAULT_SEED = 1234  # lm-eval's own default for its random and few-shot seeds


def is_server_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


_EVALUATOR_LOCK = threading.Lock()  # one evaluation at a time swaps lm-eval's environment report out


def _no_git_hash() -> None:
    return None


def _no_environment_report(storage: dict[str, Any]) -> None:
    del storage  # our results record their own versions (BenchmarkResult)


@contextmanager
def quiet_lm_eval() -> Any:
    """lm-eval logs every task it builds at INFO: keep warnings only while it runs. Its results' environment
    report is skipped too: it runs ``git describe`` in the working folder (outside a repository, a ``fatal:``
    line in the notebook) and torch's ``collect_env`` (seconds of subprocesses on every evaluation)."""
    from lm_eval import evaluator

    logger = logging.getLogger("lm_eval")
    with _EVALUATOR_LOCK:
        before = logger.level
        swapped = {
            name: getattr(evaluator, name)
            for name in ("get_git_commit_hash", "add_env_info")
            if hasattr(evaluator, name)  # a later lm-eval without them: nothing to skip
        }
        stand_ins = {"get_git_commit_hash": _no_git_hash, "add_env_info": _no_environment_report}
        logger.setLevel(logging.WARNING)
        for name in swapped:
            setattr(evaluator, name, stand_ins[name])
        try:
            yield
        finally:
            logger.setLevel(before)
            for name, original in swapped.items():
                setattr(evaluator, name, original)


@dataclass(frozen=True)
class RunOptions:
    """How lm-eval runs the tasks: questions per task, few-shot count, batch size, seed; and whether the
    result is saved under the workspace."""

    limit: Any = None
    num_fewshot: int | None = None
    batch_size: int = 8
    seed: int = DEFAULT_SEED
    save: bool = True

    def check(self) -> None:
        if self.limit is not None and not (isinstance(self.limit, (int, float)) and self.limit > 0):
            raise SwiftUsageError(
                f"limit must be a positive number of questions (or a fraction < 1), got {self.limit!r}"
            )
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise SwiftUsageError(f"num_fewshot must be >= 0, got {self.num_fewshot}")
        if self.batch_size < 1:
            raise SwiftUsageError(f"batch_size must be >= 1, got {self.batch_size}")


def run_lm_eval(lm: Any, selection: TaskSelection, options: RunOptions) -> dict:
    """lm-eval's ``simple_evaluate`` with every seed set to ``options.seed``; Hub datasets offline fail in one
    line."""
    from lm_eval import simple_evaluate

    try:
        with quiet_lm_eval():
            result = simple_evaluate(
                model=lm,
                tasks=selection.names,
                task_manager=selection.manager,
                num_fewshot=options.num_fewshot,
                limit=options.limit,
                random_seed=options.seed,
                numpy_random_seed=options.seed,
                torch_random_seed=options.seed,
                fewshot_random_seed=options.seed,
                log_samples=False,
            )
    except SwiftError:
        raise
    except Exception as exc:  # noqa: BLE001 - lm-eval and datasets raise many kinds; one line for the user
        hub = hub_dataset_error(selection, exc)
        if hub is not None:
            raise hub from None
        raise SwiftConfigError(f"lm-eval failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return result or {}


def benchmark_model(spec: Any, tasks: Sequence[str] | str, options: RunOptions) -> BenchmarkResult:
    """Run ``tasks`` on one :class:`~kernel_magics.export.loading.ModelSpec`, loaded in this process."""
    from lm_eval.models.huggingface import HFLM

    from ..device import free_memory
    from ..export.loading import inference_device, load_for_inference

    options.check()
    selection = select_tasks(tasks)
    device, dtype = inference_device()
    loaded, tokenizer = load_for_inference(spec, device, dtype)
    try:
        started = time.perf_counter()
        lm = HFLM(pretrained=loaded, tokenizer=tokenizer, batch_size=options.batch_size, device=device)
        raw = run_lm_eval(lm, selection, options)
        seconds = time.perf_counter() - started
    finally:
        del loaded
        free_memory()
    return _finish(spec.label, spec.source, raw, selection, options, seconds)


def benchmark_server(
    url: str, tasks: Sequence[str] | str, served_model: str | None, tokenizer: Any, options: RunOptions
) -> BenchmarkResult:
    """Run ``tasks`` on a model served by an OpenAI-compatible server at ``url`` (``/v1/completions``)."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    options.check()
    selection = select_tasks(tasks)
    root = url.rstrip("/").removesuffix("/completions").removesuffix("/v1")
    name, parent = _served_model(root, served_model)
    tokenizer_dir = _tokenizer_dir(tokenizer, parent or name)
    started = time.perf_counter()
    lm = LocalCompletionsAPI(
        base_url=f"{root}/v1/completions",
        model=name,
        tokenizer_backend="huggingface",
        tokenizer=str(tokenizer_dir),
        tokenized_requests=True,
        batch_size=options.batch_size,
        max_retries=1,
    )
    raw = run_lm_eval(lm, selection, options)
    seconds = time.perf_counter() - started
    return _finish(name, f"{root} ({name})", raw, selection, options, seconds)


def _served_model(root: str, served_model: str | None) -> tuple[str, str | None]:
    """(model name, its base model's name for an adapter) from the server's ``/v1/models``."""
    import httpx

    try:
        listing = httpx.get(f"{root}/v1/models", timeout=10).json().get("data", [])
    except (httpx.HTTPError, ValueError) as exc:
        raise SwiftConfigError(f"cannot list the models of {root}: {str(exc).splitlines()[0][:160]}") from None
    names = {item.get("id"): item.get("parent") for item in listing if isinstance(item, dict)}
    if served_model is None:
        if not names:
            raise SwiftConfigError(f"{root} serves no model")
        served_model = next(iter(names))
    if served_model not in names:
        raise SwiftUsageError(f"{root} does not serve '{served_model}'; it serves {', '.join(map(str, names))}")
    return served_model, names[served_model]


def _tokenizer_dir(tokenizer: Any, name: str) -> Any:
    """The tokenizer folder for a served model: ``tokenizer`` when given, else the served name resolved
    locally (``tiny``, ``smollm2``, a folder, a cached hub id; never downloaded)."""
    from ..hub import resolve_model

    try:
        return resolve_model(tokenizer if tokenizer is not None else name, allow_download=False)
    except SwiftError:
        raise SwiftUsageError(
            f"no local tokenizer for served model '{name}'; pass tokenizer=FOLDER (the served model's folder)"
        ) from None


def _finish(
    label: str, source: str, raw: dict, selection: TaskSelection, options: RunOptions, seconds: float
) -> BenchmarkResult:
    from ..config import settings

    try:
        import lm_eval

        version = getattr(lm_eval, "__version__", "")
    except ImportError:  # pragma: no cover - lm_eval ran above
        version = ""
    result = BenchmarkResult(
        model=label,
        source=source,
        scores=scores_from(raw, selection.names),
        num_fewshot=options.num_fewshot,
        limit=options.limit,
        seed=options.seed,
        seconds=seconds,
        details={"tasks": selection.names, "lm_eval": version, "configs": _configs(raw, selection.names)},
    )
    if options.save:
        result.save(settings.workspace_path / "benchmarks")
    return result


def _configs(raw: dict, names: list[str]) -> dict[str, Any]:
    """Per task: its version and the few-shot count lm-eval used (for the saved JSON)."""
    versions, shots = raw.get("versions", {}), raw.get("n-shot", {})
    return {name: {"version": versions.get(name), "num_fewshot": shots.get(name)} for name in names}
