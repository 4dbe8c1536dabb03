"""The samples table of a GRPO run: a few of the latest scored completions at every logged step.

``SamplesSink`` is called by the GRPO trainer after each log with TRL's record of the last generation
batch; the dashboard's samples tab (:mod:`kernel_magics.widgets.grpo_samples`) shows what it publishes.
"""

from __future__ import annotations

from typing import Any

from ..runtime.samples import publish_samples


class SamplesSink:
    """Turns TRL's last generation batch into ``{"step", "samples": [{prompt, completion, reward, rewards}]}``:
    kept in ``run.samples``, appended to ``samples.jsonl`` and published as the run's ``grpo_samples`` event."""

    def __init__(self, run: Any, weights: list[float] | None, shown: int = 8) -> None:
        self.run, self.weights, self.shown = run, weights, shown

    def __call__(self, step: int, logs: dict[str, Any]) -> None:
        from .rewards import completion_text

        prompts, completions = list(logs["prompt"])[-self.shown :], list(logs["completion"])[-self.shown :]
        per_function = {name: list(values)[-self.shown :] for name, values in logs["rewards"].items()}
        weights = self.weights or [1.0] * len(per_function)
        samples = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            scores = {name: _finite(values[i]) for name, values in per_function.items() if i < len(values)}
            total = sum(w * v for w, v in zip(weights, scores.values(), strict=False) if v is not None)
            samples.append(
                {
                    "prompt": _prompt_text(prompt),
                    "completion": completion_text(completion),
                    "reward": total,
                    "rewards": scores,
                }
            )
        publish_samples(self.run, "grpo_samples", {"step": step, "samples": samples})


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if value == value else None


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1]) if users else str(prompt)
    return str(prompt)
