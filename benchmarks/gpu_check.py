"""The GPU proof in one run: SFT speed and MFU, QLoRA memory against ``km.estimate``, DPO, GRPO, serving and
the speed levers.

    python benchmarks/gpu_check.py [--dry-run] [--out report.json] [--sections sft,qlora,...]

Made for a GPU machine lent for a few minutes from a bare image (see ``benchmarks/RESULTS.md`` for the
one command that installs the carried wheels and runs it). Models are random-initialised Qwen2.5
architectures (0.5B, 1.5B, 7B shapes) written to a temporary folder with the tiny model's tokenizer: speed
and memory do not depend on the weights' values. Every section catches its own failure and records it, so
one failure costs only its own figures. ``--dry-run`` runs the same code paths on the CPU with tiny shapes
and few steps (CI runs it; it exits 1 if any section failed there, so the script cannot rot).

What each section times (figures are per step, after warm-up steps that are left out):
- ``sft_lora_mfu``: LoRA SFT on the 1.5B shape, bf16, SDPA, rows of ``seq`` tokens (no padding, so the
  work per step is fixed), through ``km.sft`` and through bare ``trl.SFTTrainer`` with the same optimizer,
  LoRA, batch and seed, alternated; non-padding tokens/s between step logs (median and mean), their ratio,
  and model FLOPs utilisation. A full fine-tune of the 0.5B shape through ``km.sft`` as well.
  FLOP convention (PaLM appendix B): per trained token ``6 N + 12 L d T`` for a full fine-tune and
  ``4 N + 12 L d T`` for LoRA (frozen weights need no weight gradients; LoRA's own matmuls are left out),
  where N counts every matmul weight incl. the LM head, L layers, d hidden size, T sequence length;
  gradient-checkpointing recomputation is not counted (model FLOPs, not hardware FLOPs). The peak is the
  card's dense bf16 figure (H100/H200 SXM 989 TFLOP/s, H100 PCIe 756).
- ``qlora_peak_vs_estimate``: ``torch.cuda.max_memory_allocated`` of QLoRA (NF4, double quant, paged 8-bit
  AdamW) on the 7B shape, seq 2048, batch 1, with and without gradient checkpointing, and of LoRA bf16 on
  the 1.5B shape, against ``km.estimate`` for the same plan without its CUDA-context row (target +-15 %).
- ``dpo``: QLoRA DPO on the 1.5B shape: s/step, peak memory.
- ``grpo``: GRPO with transformers rollouts on the 0.5B shape: s/step and the share of it spent in
  ``generate``.
- ``serve``: the transformers engine on the 0.5B shape: tokens/s at 1 and 32 concurrent streams, first-token
  latency at 1 stream, and GPU memory returned by ``Server.stop()``.
- ``classroom``: one base (0.5B shape) serving 32 students' adapters through the classroom service (vLLM
  multi-LoRA where vLLM can serve, else the transformers engine) against one plain server with the base and
  one adapter, as each student's own would be: tokens/s of 32 concurrent requests (one per adapter) and the
  memory each side uses, times 32 for the separate servers (``_gpu_classroom.py``).
- ``levers``: each speed lever off and on through ``km.sft``, one knob apart (Liger kernels, padding-free
  batches, ``compile``, fused AdamW, 8-bit paged AdamW for QLoRA): tokens/s, peak memory, loss difference
  (``_gpu_levers.py`` says which shape and run each uses); a lever this machine cannot run records km.sft's
  one-line refusal.
- ``pytest_gpu``: ``pytest -m gpu`` (the GPU tests), counts of passed / failed / skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gpu_classroom import section_classroom  # noqa: E402
from _gpu_kernel_memory import section_kernel_memory  # noqa: E402
from _gpu_levers import section_levers  # noqa: E402
from _gpu_sections import (  # noqa: E402
    section_dpo,
    section_grpo,
    section_pytest,
    section_qlora,
    section_serve,
    section_sft,
)
from _gpu_setup import SECTIONS, Check, card_peak  # noqa: E402

RUNNERS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "sft_lora_mfu": section_sft,
    "qlora_peak_vs_estimate": section_qlora,
    "dpo": section_dpo,
    "grpo": section_grpo,
    "serve": section_serve,
    "classroom": section_classroom,
    "levers": section_levers,
    "pytest_gpu": section_pytest,
    "kernel_memory": section_kernel_memory,
}


def run_sections(check: Check, names: list[str], out: Path) -> dict[str, Any]:
    import torch

    report: dict[str, Any] = {
        "dry_run": check.dry,
        "device": check.device,
        "card": card_peak()[0],
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sections": {},
    }
    for name in names:
        started = time.perf_counter()
        try:
            result = {"status": "ok", **RUNNERS[name](check)}
        except Exception as exc:  # noqa: BLE001 - one section's failure is recorded, the others still run
            result = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "traceback": traceback.format_exc().splitlines()[-8:],
            }
        result["seconds"] = round(time.perf_counter() - started, 1)
        report["sections"][name] = result
        print(f"{name}: {result['status']} in {result['seconds']} s", flush=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2, default=str))
        tmp.replace(out)  # written after every section: a run cut short keeps what it measured
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", "--smoke", action="store_true", help="CPU, tiny shapes, a few steps")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    options = parser.parse_args()
    names = [n.strip() for n in options.sections.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if options.dry_run and "pytest_gpu" in names and os.environ.get("KM_GPU_CHECK_PYTEST") != "1":
        names.remove("pytest_gpu")  # on the CPU every gpu test skips; the suite itself runs them (and skips) anyway
    options.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="km-gpu-check-") as work:
        report = run_sections(Check(options.dry_run, Path(work)), names, options.out)
    failed = [n for n, r in report["sections"].items() if r["status"] != "ok"]
    print(f"report: {options.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed and options.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
