"""Continuing an SFT run's LoRA adapter (preference tuning, GRPO): find and check the adapter folder, check it
was trained on this model, and load it trainable on the planned base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...adapters import base_mismatch, is_adapter_folder
from ...errors import SwiftModelError
from ..model import load_base_for_training, ready_for_adapters
from ..planning.plan import Plan


def adapter_folder(adapter: Any) -> Path:
    """The adapter folder of ``adapter`` (a path, a Run or anything with ``adapter_dir``), checked."""
    if hasattr(adapter, "adapter_dir") and getattr(adapter, "done", True) is False:
        from ...errors import SwiftUsageError

        raise SwiftUsageError(
            f"run {adapter.name} is {adapter.status}, so its adapter is not written yet; wait for it (run.wait()) "
            "and pass it again"
        )
    path = Path(str(getattr(adapter, "adapter_dir", adapter))).expanduser()
    if not path.exists():
        raise SwiftModelError(
            f"adapter folder {path} does not exist; pass an SFT run's adapter folder (run.adapter_dir)"
        )
    if not is_adapter_folder(path):
        if (path / "config.json").is_file():
            raise SwiftModelError(
                f"{path} holds a whole model (a full fine-tune), not a LoRA adapter; pass it as --model instead"
            )
        raise SwiftModelError(
            f"{path} has no adapter_config.json; pass the adapter/ folder of an SFT run (run.adapter_dir)"
        )
    return path.resolve()


def check_adapter_matches(adapter_dir: Path, model_path: Path) -> None:
    """Fail with one line when ``adapter_dir`` was trained on a different architecture than ``model_path``."""
    mismatch = base_mismatch(adapter_dir, model_path)
    if mismatch is not None:
        raise SwiftModelError(
            f"adapter {adapter_dir} was trained on {Path(mismatch.trained_on).name} but --model is "
            f"{Path(model_path).name} ({mismatch.field} {mismatch.theirs} vs {mismatch.ours}); pass --model "
            f"{mismatch.trained_on} or an adapter trained on this model"
        )


def load_adapter_for_training(path: Path, adapter_dir: Path, plan: Plan, trust_remote_code: bool = False) -> Any:
    """The base model of ``plan`` with the adapter in ``adapter_dir`` loaded as trainable (no new LoRA)."""
    from peft import PeftModel

    model = ready_for_adapters(load_base_for_training(path, plan, trust_remote_code), plan)
    try:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    except Exception as exc:  # noqa: BLE001 - shape mismatches, missing modules ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SwiftModelError(
            f"adapter {adapter_dir} does not fit model {path.name} ({first[:200]}); pass the model it was trained on"
        ) from None
