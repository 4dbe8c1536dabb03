"""One line for a run that failed: what went wrong and, for out-of-memory, a plan that needs less."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import SwiftError

if TYPE_CHECKING:
    from .run_config import RunConfig


def describe_failure(exc: BaseException, run: Any) -> str:
    """One line for a failed run: SwiftErrors as they are, out-of-memory with a plan that would fit."""
    if isinstance(exc, SwiftError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        step = run.progress.get("step", 0)
        return f"out of device memory at step {step} ({text[:120]}); try: {suggest_smaller(run.config)}"
    return f"{name}: {text}" if text else name


def suggest_smaller(config: RunConfig) -> str:
    """A plan that needs less memory than ``config``'s."""
    plan = config.plan
    method = plan.method
    batch = int(plan.batch_size or config.batch_size or 1)
    accum = int(plan.grad_accum or config.grad_accum or 1)
    steps = []
    if method == "full":
        steps.append("--method lora")
    elif method == "lora":
        steps.append("--method qlora")
    if batch > 1:
        steps.append(f"--batch-size {max(1, batch // 2)} --grad-accum {accum * 2}")
    if not plan.gradient_checkpointing:
        steps.append("--gradient-checkpointing")
    if (not steps or batch == 1) and config.max_length:  # write_run records it
        steps.append(f"--max-length {max(128, int(config.max_length) // 2)}")
    return " ".join(steps) + " (km.estimate shows what fits)"
