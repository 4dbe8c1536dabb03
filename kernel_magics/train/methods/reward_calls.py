"""Calling GRPO reward functions: a time limit per call, a stop request honoured while one runs, the failing
sample found by bisection, and what they return checked.

Each call runs in a daemon thread that the trainer's thread waits for in short slices: a reward still running
after ``timeout_s`` fails the run with one line, and a stop request ends the wait at once (the function is
left to finish on its own; Python cannot interrupt it). After a function raises on a batch, the failing sample
is found by calling it on halves of the batch, the first half first: about ``2 * log2(n)`` calls instead of
one per completion, and the sample found is the first one that fails on its own.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .rewards import Reward, SwiftRewardError, completion_text

POLL_S = 0.05  # how often a wait for a reward checks the stop request
STOPPED_MID_STEP = "stopped while reward"  # how the line of a stop during a reward call begins


class RewardStopped(SwiftRewardError):
    """The run was asked to stop while a reward function was running: the run ends stopped, not failed."""

    ends_as_stopped = True


class _Outcome:
    """What one call in its thread gave: values, or the exception it raised."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.values: Any = None
        self.error: BaseException | None = None


def _sample(completions: Sequence[Any], index: int) -> str:
    text = completion_text(completions[index]) if index < len(completions) else ""
    return f"sample {index} (completion {text[:60]!r})"


def _rows(kwargs: dict[str, Any], size: int, picked: list[int]) -> dict[str, Any]:
    """The per-completion columns of ``kwargs`` narrowed to the ``picked`` rows (other values as they are)."""
    return {k: [v[i] for i in picked] if isinstance(v, list) and len(v) == size else v for k, v in kwargs.items()}


class CheckedReward:
    """Calls a reward with a time limit and checks what it returns; problems raise one :class:`SwiftRewardError`
    line. ``stop``: the run's stop request (a wait for the function ends as soon as it is set)."""

    def __init__(
        self, func: Callable[..., Any], name: str, timeout_s: float = 60.0, stop: threading.Event | None = None
    ) -> None:
        self.func = func
        self.__name__ = name
        self.timeout_s = timeout_s
        self.stop = stop

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        deadline = time.monotonic() + self.timeout_s
        outcome = self._call(prompts, completions, kwargs, deadline)
        if outcome.error is not None:
            exc = outcome.error
            where = self._failing_sample(prompts, completions, kwargs, time.monotonic() + self.timeout_s)
            raise SwiftRewardError(
                f"reward {self.__name__} raised {type(exc).__name__}: {str(exc)[:120]} on {where}; fix the function "
                "and run again"
            ) from None
        return self.check(outcome.values, completions)

    def _call(self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any], deadline: float) -> _Outcome:
        """The function's outcome on this batch, waited for until ``deadline`` or a stop request."""
        outcome = _Outcome()

        def target() -> None:
            try:
                outcome.values = self.func(prompts=prompts, completions=completions, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any bug in the user's function
                outcome.error = exc
            finally:
                outcome.done.set()

        threading.Thread(target=target, name=f"km-reward-{self.__name__}", daemon=True).start()
        while not outcome.done.wait(POLL_S):
            if self.stop is not None and self.stop.is_set():
                raise RewardStopped(
                    f"{STOPPED_MID_STEP} {self.__name__} was running on {len(completions)} completions; the step "
                    "was not finished, so the last checkpoint is where resume() continues"
                )
            if time.monotonic() >= deadline:
                raise SwiftRewardError(
                    f"reward {self.__name__} did not return within {self.timeout_s:g} s on {len(completions)} "
                    "completions; make it faster or raise reward_timeout"
                )
        return outcome

    def _failing_sample(
        self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any], deadline: float
    ) -> str:
        """The first sample the function fails on alone, found by bisection (within one more time limit)."""
        size = len(completions)
        candidates = list(range(size))
        try:
            while len(candidates) > 1:
                half = candidates[: len(candidates) // 2]
                rest = candidates[len(candidates) // 2 :]
                if self._fails_on(prompts, completions, kwargs, half, deadline):
                    candidates = half
                elif self._fails_on(prompts, completions, kwargs, rest, deadline):
                    candidates = rest
                else:
                    return f"the batch of {size} completions (no smaller part of it fails)"
            if candidates:  # the part left is known to fail (the whole batch did, or the half it came from)
                return _sample(completions, candidates[0])
        except RewardStopped:
            raise
        except SwiftRewardError:
            pass  # no time left to look further
        return f"the batch of {size} completions"

    def _fails_on(
        self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any], picked: list[int], deadline: float
    ) -> bool:
        part = _rows(kwargs, len(completions), picked)
        some_prompts = [prompts[i] for i in picked] if len(prompts) == len(completions) else prompts
        return self._call(some_prompts, [completions[i] for i in picked], part, deadline).error is not None

    def check(self, values: Any, completions: list[Any]) -> list[float | None]:
        if hasattr(values, "tolist"):
            values = values.tolist()
        if not isinstance(values, (list, tuple)):
            raise SwiftRewardError(
                f"reward {self.__name__} returned {type(values).__name__}, not a list of numbers, for "
                f"{len(completions)} completions; return one number per completion"
            )
        if len(values) != len(completions):
            raise SwiftRewardError(
                f"reward {self.__name__} returned {len(values)} values for {len(completions)} completions (first: "
                f"{_sample(completions, 0)}); return one number per completion"
            )
        out: list[float | None] = []
        for index, value in enumerate(values):
            ok = value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool))
            if ok and value is not None and not math.isfinite(float(value)):
                ok = False
            if not ok:
                raise SwiftRewardError(
                    f"reward {self.__name__} returned {value!r} ({type(value).__name__}) for "
                    f"{_sample(completions, index)}; return a finite number (or None to skip)"
                )
            out.append(None if value is None else float(value))
        return out


def wrap(rewards: list[Reward], timeout_s: float = 60.0, stop: threading.Event | None = None) -> list[CheckedReward]:
    """The resolved rewards as the trainer calls them: time-limited, stoppable, checked."""
    return [CheckedReward(r.func, r.name, timeout_s, stop) for r in rewards]
