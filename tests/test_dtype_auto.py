"""dtype "auto": bf16 where the hardware computes it natively (CUDA with bf16, CPUs whose flags show AMX-BF16 or
AVX512-BF16), fp32 on other CPUs; decided here from injected CPU flags, so the tests pass on any CPU."""

from __future__ import annotations

import pytest

import kernel_magics as km
from kernel_magics.device import DeviceInfo, cpu_native_bf16
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.planning.plan import make_plan

CPU = DeviceInfo("cpu", None, "cpu", 24.0, 20.0, False, "test")
PLAIN = frozenset({"fpu", "sse4_2", "avx2", "avx512f"})


def with_flags(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str]) -> None:
    monkeypatch.setattr("kernel_magics.device.cpu_flags", lambda: flags)


def plan_for(method: str = "auto", dtype: str = "auto"):  # noqa: ANN201
    return make_plan(method, CPU, batch_size=4, grad_accum=1, gradient_checkpointing=None, dtype=dtype)


def test_native_bf16_feature_from_the_flags():
    assert cpu_native_bf16(PLAIN) is None
    assert cpu_native_bf16(PLAIN | {"avx512_bf16"}) == "AVX512-BF16"
    assert cpu_native_bf16(PLAIN | {"amx_bf16", "amx_tile", "avx512_bf16"}) == "AMX-BF16"
    assert cpu_native_bf16(["avx512bw", "avx512_fp16"]) is None  # neither is a bf16 matmul


@pytest.mark.parametrize(
    ("extra", "dtype", "why"),
    [
        ({"avx512_bf16"}, "bf16", "bf16: this CPU has AVX512-BF16"),
        ({"amx_bf16", "amx_tile"}, "bf16", "bf16: this CPU has AMX-BF16"),
        (set(), "fp32", "fp32: this CPU has no AMX / AVX512-BF16"),
    ],
)
def test_auto_on_the_cpu_follows_its_flags_and_says_why(monkeypatch, extra, dtype, why):
    with_flags(monkeypatch, PLAIN | extra)
    plan = plan_for()
    assert (plan.method, plan.dtype) == ("lora", dtype)
    assert why in plan.describe() and f"LoRA in {dtype}" in plan.describe()


def test_fp32_still_forces_fp32_and_full_fine_tuning_stays_fp32(monkeypatch):
    with_flags(monkeypatch, PLAIN | {"avx512_bf16"})
    forced = plan_for(dtype="fp32")
    assert forced.dtype == "fp32" and "bf16" not in forced.describe()
    full = plan_for("full")
    assert full.dtype == "fp32" and "full fine-tuning keeps fp32 weights" in full.describe()
    assert plan_for("full", dtype="bf16").dtype == "bf16"  # asked for: the user's choice


def test_gpu_auto_is_unchanged_by_the_cpu_flags(monkeypatch):
    with_flags(monkeypatch, PLAIN)
    h100 = DeviceInfo("cuda", 0, "H100", 80.0, 78.0, True, "test")
    plan = make_plan("lora", h100, batch_size=4, grad_accum=1, gradient_checkpointing=None)
    assert plan.dtype == "bf16" and "this CPU" not in plan.describe()


def test_estimate_counts_each_method_in_the_dtype_auto_trains_it_in(monkeypatch):
    from kernel_magics.train.planning.estimate import estimate

    with_flags(monkeypatch, PLAIN | {"avx512_bf16"})
    native = estimate("tiny", device="cpu")
    with_flags(monkeypatch, PLAIN)
    emulated = estimate("tiny", device="cpu")
    assert native.settings["dtype"] == "bf16" and emulated.settings["dtype"] == "fp32"
    weights = ("weights", "lora")
    assert native.breakdown.loc[weights] == pytest.approx(emulated.breakdown.loc[weights] / 2)
    # full fine-tuning trains in fp32 on either CPU: the same bytes
    assert native.totals["full"] == pytest.approx(emulated.totals["full"])


def test_a_run_on_a_native_bf16_cpu_trains_in_bf16(tiny_model, workspace, monkeypatch):
    with_flags(monkeypatch, PLAIN | {"avx512_bf16"})
    options = dict(batch_size=2, lora_r=4, lora_alpha=8, max_steps=2, save_steps=1000, verbose=False, device="cpu")
    run = km.sft(str(tiny_model), str(tiny_dataset("sft")), **options)
    assert run.wait(timeout=300) == "finished", run.error
    assert run.config.plan.dtype == "bf16"
    assert any("bf16: this CPU has AVX512-BF16" in note for note in run.notes)
