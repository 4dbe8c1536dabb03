"""GRPO reward calls never wait forever: a time limit per call, a stop request ends a hanging call at once,
and the sample a reward fails on is found by bisection, not by calling it once per completion."""

from __future__ import annotations

import math
import threading

import pytest
import torch

import kernel_magics as km
from kernel_magics.errors import SwiftConfigError
from kernel_magics.train.methods.grpo import GRPOArgs
from kernel_magics.train.methods.reward_calls import CheckedReward, RewardStopped
from kernel_magics.train.methods.rewards import SwiftRewardError

HANG_S = 20.0  # a "hanging" reward blocks this long at most, so a regression fails instead of hanging the suite


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hanging(release: threading.Event):  # noqa: ANN202 - a reward function
    def slow(completions, **kwargs):
        release.wait(HANG_S)
        return [0.0] * len(completions)

    return slow


def test_a_reward_that_does_not_return_fails_after_its_time_limit():
    release = threading.Event()
    checked = CheckedReward(_hanging(release), "slow", timeout_s=0.3)
    try:
        with pytest.raises(SwiftRewardError) as info:
            checked(prompts=["p"] * 2, completions=["a", "b"])
        assert not release.is_set()  # the call was given up while the function still ran
        assert str(info.value) == (
            "reward slow did not return within 0.3 s on 2 completions; make it faster or raise reward_timeout"
        )
    finally:
        release.set()


def test_a_stop_request_ends_the_wait_for_a_hanging_reward():
    release, stop = threading.Event(), threading.Event()
    checked = CheckedReward(_hanging(release), "slow", timeout_s=3600, stop=stop)
    threading.Timer(0.2, stop.set).start()
    try:
        with pytest.raises(RewardStopped, match=r"^stopped while reward slow was running on 3 completions"):
            checked(prompts=["p"] * 3, completions=["a", "b", "c"])
        assert not release.is_set()
    finally:
        release.set()


@pytest.mark.parametrize(("size", "bad"), [(16, 13), (64, 60), (7, 0), (1, 0), (33, 32)])
def test_the_failing_sample_is_found_by_bisection(size, bad):
    calls: list[int] = []

    def picky(completions, index, **kwargs):
        calls.append(len(completions))
        return [1.0 / (i != bad) for i in index]  # ZeroDivisionError on sample `bad` only

    with pytest.raises(SwiftRewardError) as info:
        CheckedReward(picky, "picky")(
            prompts=["p"] * size, completions=[f"c{i}" for i in range(size)], index=list(range(size))
        )
    assert str(info.value).startswith(f"reward picky raised ZeroDivisionError: float division by zero on sample {bad} ")
    assert len(calls) <= 1 + 2 * math.ceil(math.log2(size)), calls  # once per completion would be 1 + bad + 1
    assert calls[0] == size


def test_the_first_failing_sample_is_named_when_several_fail():
    def picky(completions, **kwargs):
        if any(c in ("c5", "c9") for c in completions):
            raise ValueError("bad row")
        return [0.0] * len(completions)

    with pytest.raises(SwiftRewardError, match=r"on sample 5 \(completion 'c5'\)"):
        CheckedReward(picky, "picky")(prompts=["p"] * 12, completions=[f"c{i}" for i in range(12)])


def test_a_reward_that_fails_only_on_whole_batches_says_so():
    def batchy(completions, **kwargs):
        if len(completions) > 4:
            raise RuntimeError("too many")
        return [0.0] * len(completions)

    with pytest.raises(SwiftRewardError) as info:
        CheckedReward(batchy, "batchy")(prompts=["p"] * 8, completions=["x"] * 8)
    assert str(info.value).endswith(
        "on the batch of 8 completions (no smaller part of it fails); fix the function and run again"
    )


def test_reward_timeout_is_a_grpo_knob_checked_in_one_line(tiny_model, workspace):
    assert GRPOArgs().reward_timeout == 60.0
    with pytest.raises(SwiftConfigError, match=r"^reward_timeout must be > 0 seconds, got 0; fix --reward-timeout$"):
        km.grpo(str(tiny_model), [{"prompt": "Hi"}], reward="length", reward_timeout=0, verbose=False)


def test_run_stop_ends_a_grpo_run_whose_reward_hangs(tiny_model, workspace):
    entered, release = threading.Event(), threading.Event()

    def stuck(completions, **kwargs):
        entered.set()
        release.wait(HANG_S)
        return [0.0] * len(completions)

    run = km.grpo(
        str(tiny_model),
        [{"prompt": "Hi"}, {"prompt": "Count to three."}],
        reward=stuck,
        method="full",
        num_generations=4,
        max_completion_length=4,
        max_steps=2,
        verbose=False,
        where="kernel",  # the reward shares threading.Events with this test: it must run in this process
    )
    try:
        assert entered.wait(300), run.error
        run.stop()
        assert run.wait(HANG_S / 2) == "stopped", (run.status, run.error)  # well before the reward returns
        assert not release.is_set()
        assert any(n.startswith("stopped while reward stuck was running") for n in run.notes)
    finally:
        release.set()
        run.wait(60)
