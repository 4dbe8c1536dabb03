"""Speed levers (compile, Liger kernels, padding-free batches, the optimizer): each either works on this device
or is refused in one line before anything loads; CUDA decisions are checked on a described CUDA device."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics.device import DeviceInfo
from kernel_magics.errors import SwiftConfigError, SwiftDeviceError
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.arguments import training_kwargs
from kernel_magics.train.methods.sft import SFTArguments
from kernel_magics.train.planning.levers import apply_levers
from kernel_magics.train.planning.plan import make_plan

QUIET = dict(batch_size=2, lora_r=4, lora_alpha=8, logging_steps=1, save_steps=1000, verbose=False, device="cpu")
H100 = DeviceInfo("cuda", 0, "H100", 80.0, 78.0, True, "test")
CPU = DeviceInfo("cpu", None, "cpu", 24.0, 20.0, False, "test")


def one_line(info: pytest.ExceptionInfo) -> str:
    text = str(info.value)
    assert "\n" not in text and len(text) <= 300, text
    return text


def levers(device: DeviceInfo, model: Path, method: str = "lora", **knobs):  # noqa: ANN201
    plan = make_plan(method, device, batch_size=4, grad_accum=1, gradient_checkpointing=None, dtype="fp32")
    return apply_levers(plan, SFTArguments(**knobs), device, model)


def installed(monkeypatch: pytest.MonkeyPatch, *present: str) -> None:
    """Pretend exactly ``present`` of the optional GPU packages are importable."""
    real = importlib.util.find_spec
    optional = {"liger_kernel", "flash_attn", "triton", "bitsandbytes"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (object() if name in present else None) if name in optional else real(name, *a),
    )


def test_cuda_only_levers_are_one_line_on_the_cpu(tiny_model, workspace):
    data = str(tiny_dataset("sft"))
    with pytest.raises(SwiftDeviceError) as info:
        km.sft(str(tiny_model), data, use_liger_kernel="on", **QUIET)
    assert "Liger kernels need CUDA" in one_line(info) and "auto or off" in one_line(info)
    with pytest.raises(SwiftDeviceError) as info:
        km.sft(str(tiny_model), data, padding_free=True, **QUIET)
    assert "padding_free needs CUDA with FlashAttention-2" in one_line(info) and "--packing" in one_line(info)
    with pytest.raises(SwiftConfigError) as info:
        km.sft(str(tiny_model), data, optim="adamw_torch_fusd", **QUIET)
    assert "optim must be a transformers optimizer" in one_line(info) and "adamw_torch_fused" in one_line(info)
    with pytest.raises(SwiftConfigError) as info:
        km.sft(str(tiny_model), data, use_liger_kernel="yes", **QUIET)
    assert "use_liger_kernel must be one of auto, on, off" in one_line(info)


def test_an_8bit_optimizer_without_bitsandbytes_is_one_line(tiny_model, workspace, monkeypatch):
    installed(monkeypatch)
    with pytest.raises(SwiftDeviceError) as info:
        km.dpo(str(tiny_model), str(tiny_dataset("dpo")), optim="paged_adamw_8bit", **QUIET)
    assert "optim paged_adamw_8bit needs bitsandbytes" in one_line(info)


def test_compile_is_refused_on_4bit_layers(tiny_model, workspace):
    pytest.importorskip("bitsandbytes")
    with pytest.raises(SwiftConfigError) as info:
        km.sft(str(tiny_model), str(tiny_dataset("sft")), method="qlora", compile=True, **QUIET)
    assert "compile cannot work here" in one_line(info) and "4-bit" in one_line(info)


def test_liger_auto_turns_on_for_supported_models_on_cuda(tiny_model, tiny_llama, monkeypatch):
    installed(monkeypatch, "liger_kernel", "triton")
    monkeypatch.setattr(
        "kernel_magics.train.planning.levers.liger_model_types", lambda: frozenset({"qwen2", "mistral"})
    )
    plan = levers(H100, tiny_model)
    assert plan.liger and "Liger kernels on (qwen2 on CUDA, auto)" in plan.describe()
    assert training_kwargs(SFTArguments(), plan, Path("out"), False)["use_liger_kernel"] is True
    assert not levers(H100, tiny_model, use_liger_kernel="off").liger
    assert not levers(CPU, tiny_model).liger and "Liger" not in levers(CPU, tiny_model).describe()
    plan = levers(H100, tiny_llama)  # a model type this liger-kernel does not patch
    assert not plan.liger and "do not patch model type 'llama'" in plan.describe()
    installed(monkeypatch, "triton")
    plan = levers(H100, tiny_llama)
    assert not plan.liger and "liger-kernel is not installed" in plan.describe()
    with pytest.raises(SwiftDeviceError) as info:
        levers(H100, tiny_llama, use_liger_kernel="on")
    assert "pip install 'kernel_magics[liger]'" in one_line(info)


def test_padding_free_and_compile_reach_the_trainer_config_on_cuda(tiny_model, monkeypatch):
    from kernel_magics.train.methods.sft import trl_config

    installed(monkeypatch, "flash_attn", "triton")
    plan = levers(H100, tiny_model, padding_free=True, compile=True, use_liger_kernel="off")
    assert plan.padding_free and plan.compile and plan.optim == "adamw_torch_fused"
    assert "compiling, first step slower" in plan.describe()
    kwargs = training_kwargs(SFTArguments(), plan, Path("out"), False)
    assert kwargs["torch_compile"] is True and kwargs["optim"] == "adamw_torch_fused"
    assert trl_config(SFTArguments(), plan, Path("out"), False).padding_free is True
    installed(monkeypatch, "triton")
    with pytest.raises(SwiftDeviceError) as info:
        levers(H100, tiny_model, padding_free=True)
    assert "pip install flash-attn" in one_line(info)
    installed(monkeypatch)
    with pytest.raises(SwiftConfigError) as info:
        levers(H100, tiny_model, compile=True)
    assert "needs triton" in one_line(info)


@pytest.mark.slow
def test_compile_trains_the_tiny_model_with_the_eager_losses(tiny_model, workspace):
    curves = {}
    for compiled in (False, True):
        options = {**QUIET, "dtype": "fp32", "lora_dropout": 0.0, "max_steps": 2, "lr": 2e-3}
        run = km.sft(str(tiny_model), str(tiny_dataset("sft")), compile=compiled, **options)
        assert run.wait(timeout=600) == "finished", run.error
        assert run.config.plan.compile is compiled
        assert any("compiling, first step slower" in note for note in run.notes) is compiled
        curves[compiled] = run.metrics.set_index("step")["loss"].dropna().tolist()
    assert len(curves[True]) == 2
    assert max(abs(a - b) for a, b in zip(curves[False], curves[True], strict=True)) < 1e-4  # measured 5e-7
