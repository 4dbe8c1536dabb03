"""The GPU check's ``levers`` section: each speed lever of km.sft measured off and on, side by side.

Every pair trains the same shape, rows, seed and steps through ``km.sft`` and differs in one knob only:

- ``liger``: ``use_liger_kernel`` off / on (LoRA, 1.5B shape);
- ``padding_free``: ``padding_free`` off / on on rows of mixed lengths (LoRA, 1.5B shape);
- ``compile``: ``compile`` off / on (LoRA, 1.5B shape; the first steps, compilation included, are left out
  like every warm-up step, and the run's end-to-end seconds are reported too; not in a dry run, where
  compiling takes minutes of CPU);
- ``fused_adamw``: ``optim`` adamw_torch / adamw_torch_fused (full fine-tune, 0.5B shape, where the optimizer
  step touches every weight);
- ``qlora_8bit_adamw``: ``optim`` adamw_torch / paged_adamw_8bit for QLoRA (7B shape, batch 1).

For each: tokens/s (median, non-padding tokens), s/step, peak GPU memory, the on/off tokens/s ratio and peak
difference, and the largest per-step loss difference. A lever that cannot run on this machine is recorded with
the one line km.sft refused it with (on the CPU of a dry run: Liger and padding-free need CUDA).
"""

from __future__ import annotations

import time
from typing import Any

from _gpu_setup import Check, km_sft, peak_gb, release, reset_peak, step_figures  # noqa: E402


def lever_pairs(check: Check) -> dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """lever -> (shared options, off, on)."""
    lora = dict(shape="1.5b", method="lora", rows=check.seq)
    return {
        "liger": (lora, {"use_liger_kernel": "off"}, {"use_liger_kernel": "on"}),
        "padding_free": ({**lora, "rows": "mixed"}, {"padding_free": False}, {"padding_free": True}),
        "compile": (lora, {"compile": False}, {"compile": True}),
        "fused_adamw": (
            dict(shape="0.5b", method="full", rows=check.seq, lr=1e-5),
            {"optim": "adamw_torch"},
            {"optim": "adamw_torch_fused"},
        ),
        "qlora_8bit_adamw": (
            dict(shape="7b", method="qlora", rows=check.seq, batch_size=1, gradient_checkpointing=True),
            {"optim": "adamw_torch"},
            {"optim": "paged_adamw_8bit"},
        ),
    }


def measure(check: Check, shared: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """One km.sft run: its step figures, peak memory, losses and end-to-end seconds (or the refusal line)."""
    from kernel_magics.errors import SwiftError

    options = dict(shared)
    folder = check.model(options.pop("shape"))
    rows = options.pop("rows")
    data = check.mixed_rows(check.seq) if rows == "mixed" else check.rows(rows)
    method = options.pop("method")
    reset_peak()
    started = time.perf_counter()
    try:
        run = km_sft(check, folder, data, method, **options, **knobs)
    except SwiftError as exc:
        return {"refused": str(exc)}
    frame = run.metrics
    losses = frame["loss"].dropna().tolist() if "loss" in frame else []
    figures = {
        **step_figures(run, check.skip),
        "peak_gb": peak_gb(check),
        "end_to_end_s": round(time.perf_counter() - started, 2),
        "losses": [round(float(x), 5) for x in losses],
    }
    release()
    return figures


def compare(off: dict[str, Any], on: dict[str, Any]) -> dict[str, Any]:
    """The on / off figures of one lever."""
    if "refused" in off or "refused" in on:
        return {}
    out: dict[str, Any] = {}
    if off.get("tokens_per_s_median") and on.get("tokens_per_s_median"):
        out["tokens_per_s_ratio"] = round(on["tokens_per_s_median"] / off["tokens_per_s_median"], 3)
    if off.get("peak_gb") is not None and on.get("peak_gb") is not None:
        out["peak_gb_delta"] = round(on["peak_gb"] - off["peak_gb"], 3)
    pairs = list(zip(off["losses"], on["losses"], strict=False))
    out["max_loss_diff"] = round(max(abs(a - b) for a, b in pairs), 5) if pairs else None
    return out


def section_levers(check: Check) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, (shared, off_knobs, on_knobs) in lever_pairs(check).items():
        if check.dry and name == "compile":  # minutes of compilation on a CPU; tests/test_speed_levers.py trains it
            report[name] = {"skipped": "dry run: tests/test_speed_levers.py trains the tiny model compiled"}
            continue
        off = measure(check, shared, off_knobs)
        on = measure(check, shared, on_knobs)
        report[name] = {"off": off_knobs, "on": on_knobs, "figures_off": off, "figures_on": on, **compare(off, on)}
    return report
