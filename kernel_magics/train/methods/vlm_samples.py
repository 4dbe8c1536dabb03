"""What the model answers on a few image rows while it trains: :class:`SamplesCallback` publishes greedy
answers before the first step and a few times during the run (the dashboard's "samples" tab)."""

from __future__ import annotations

from typing import Any

from ..runtime.samples import publish_samples

SAMPLE_ROWS = 4
SAMPLE_TIMES = 5  # besides the one before training
SAMPLE_TOKENS = 24


def sample_rows(prepared: Any, n: int = SAMPLE_ROWS) -> list[tuple[str, dict[str, Any]]]:
    """(label, row) of the rows to sample: held-out rows when there are some, else the first training rows."""
    source = prepared.eval if prepared.eval is not None else prepared.train
    return list(zip(source.labels[:n], source.rows[:n], strict=False))


class SamplesCallback:
    """Every ``every`` steps (and before the first), answer a few rows greedily and publish them.

    The run gets a ``samples`` event ``{"step", "samples": [{"label", "images", "question", "expected",
    "answer"}]}``, keeps the latest in ``run.samples`` and appends it to ``samples.jsonl`` in its folder.
    """

    def __init__(self, run: Any, processor: Any, rows: list[tuple[str, dict[str, Any]]], every: int = 0) -> None:
        self.run = run
        self.processor = processor
        self.rows = rows
        self.every = every
        self._done_steps: set[int] = set()

    def _question(self, row: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
        from ...data.vision import message_text

        messages = row.get("messages") or [*row["prompt"], *row["completion"]]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt = messages[:last]
        return prompt, message_text(prompt, "user"), message_text(messages[: last + 1], "assistant")

    def answers(self, model: Any) -> list[dict[str, Any]]:
        """Greedy answers of ``model`` to the sample rows."""
        import torch

        from ...data.images import load_image

        out = []
        was_training = model.training
        model.eval()
        for module in model.modules():  # bitsandbytes repacks 4-bit weights for CPU inference in eval mode,
            if type(module).__name__ == "Linear4bit":  # which training cannot use afterwards: keep them as is
                module.train(was_training)
        try:
            for label, row in self.rows:
                prompt, question, expected = self._question(row)
                text = self.processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
                images = [load_image(p) for p in row["images"]]
                inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
                device = next(model.parameters()).device
                inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
                with torch.no_grad():
                    ids = model.generate(**inputs, max_new_tokens=SAMPLE_TOKENS, do_sample=False, use_cache=True)
                start = inputs["input_ids"].shape[1]
                answer = self.processor.tokenizer.decode(ids[0, start:], skip_special_tokens=True)
                out.append(
                    {
                        "label": label,
                        "images": list(row["images"]),
                        "question": question,
                        "expected": expected,
                        "answer": answer,
                    }
                )
        finally:
            if was_training:
                model.train()
        return out

    def publish(self, step: int, model: Any) -> None:
        if step in self._done_steps or not self.rows:
            return
        self._done_steps.add(step)
        publish_samples(self.run, "samples", {"step": step, "samples": self.answers(model)})

    # TrainerCallback hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.every:
            self.every = max(1, -(-int(state.max_steps or 0) // SAMPLE_TIMES)) if state.max_steps else 50
        if model is not None:
            self.publish(int(state.global_step), model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None and self.every and state.global_step % self.every == 0:
            self.publish(int(state.global_step), model)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            self.publish(int(state.global_step), model)


# -- model -------------------------------------------------------------------------------------------


def as_trainer_callback(callback: SamplesCallback) -> Any:
    from transformers import TrainerCallback

    class _Samples(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            callback.on_train_begin(*args, **kwargs)

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            callback.on_step_end(*args, **kwargs)

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            callback.on_train_end(*args, **kwargs)

    wrapper = _Samples()
    wrapper.samples = callback  # type: ignore[attr-defined]
    return wrapper
