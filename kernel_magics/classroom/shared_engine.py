"""The one engine every student shares: hot adapter loading, and the per-request view the OpenAI routes use.

:class:`SharedEngine` stands in for the engine in the serving app's routes (``serve/replies.py``): prompts,
limits and replies are the plain server's, but ``submit`` puts the request in its user's line of the
:class:`~.fairness.FairScheduler` after checking the teacher's chat policy and the user's token budget,
and ``pending`` is the caller's own line (the server's ``max_waiting`` then bounds each user, not the class).

:func:`load_adapter` / :func:`unload_adapter` change the engine's adapters (the transformers engine's peft
adapters, or the vLLM engine's LoRA requests, :mod:`.vllm_engine`); they run
through :meth:`FairScheduler.exclusive`, while no request is inside the engine.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..errors import SwiftModelError
from ..serve.protocol import APIError
from .auth import CALLER, Caller
from .fairness import FairScheduler


def may_chat(caller: Caller, model: str, base: str, policy: str) -> bool:
    """Whether ``caller`` may generate with ``model`` ("own": the base and their own adapters)."""
    if model == base or caller.teacher or policy == "everyone":
        return True
    return model.split("/", 1)[0] == caller.name


class SharedEngine:
    """The engine as one request's caller sees it: ``models`` lists what they may chat with (another student's
    adapter under the "own" policy is not there: listed nowhere, and a request for it is a 404 like any unknown
    model), ``submit`` / ``pending`` use their line; everything else is the engine's."""

    def __init__(self, engine: Any, turns: FairScheduler, chat_policy: str) -> None:
        self.engine = engine
        self.turns = turns
        self.chat_policy = chat_policy

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    @property
    def models(self) -> list[str]:
        """The models the caller may chat with (every one when no caller is set: the OpenAPI document)."""
        caller, models = CALLER.get(), self.engine.models
        if caller is None:
            return list(models)
        return [m for m in models if may_chat(caller, m, models[0], self.chat_policy)]

    @staticmethod
    def caller() -> Caller:
        caller = CALLER.get()
        if caller is None:  # the auth middleware sets it for every generation route
            raise APIError("no caller: send your JupyterHub API token", status=401, type="authentication_error")
        return caller

    def pending(self) -> int:
        return self.turns.waiting(self.caller().name)

    def submit(self, handle: Any) -> None:
        caller = self.caller()
        if not may_chat(caller, handle.model, self.engine.models[0], self.chat_policy):
            raise APIError(
                f"{handle.model} belongs to another student; the teacher lets students chat with their own adapters only",
                status=403, type="permission_error", param="model", code="not_your_adapter",
            )  # fmt: skip
        wait_s = self.turns.meter.retry_after(caller.name)
        if wait_s is not None:
            raise APIError(
                f"{caller.name} used {self.turns.meter.used(caller.name)} tokens in the last minute, the class's limit "
                f"is {self.turns.meter.limit}; retry in {wait_s} s",
                status=429, type="rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": str(wait_s)},
            )  # fmt: skip
        self.turns.submit(caller.name, handle)


def load_adapter(engine: Any, name: str, folder: Path) -> None:
    """Add the LoRA adapter in ``folder`` to the idle ``engine`` as model ``name`` (the transformers engine's peft
    model; an engine with its own ``add_adapter``, the classroom's vLLM one, loads it itself)."""
    if hasattr(engine, "add_adapter"):
        engine.add_adapter(name, Path(folder))
        return
    from peft import PeftModel

    try:
        if engine.adapter_dirs:
            engine.model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
        else:
            engine.model = PeftModel.from_pretrained(engine.model, str(folder), adapter_name=name, is_trainable=False)
    except Exception as exc:  # noqa: BLE001 - whatever peft or safetensors raise, the adapter is refused
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if engine.adapter_dirs:
            _forget_partial(engine.model, name)
        raise SwiftModelError(f"adapter {name} does not load into {engine.served_name}: {first[:200]}") from None
    engine.model.eval()
    engine.adapter_dirs[name] = Path(folder)
    if name not in engine.models:
        engine.models.append(name)


def unload_adapter(engine: Any, name: str) -> None:
    """Remove model ``name`` from the idle ``engine`` (the last one: back to the plain base model)."""
    if name not in engine.adapter_dirs:
        return
    if hasattr(engine, "remove_adapter"):
        engine.remove_adapter(name)
        return
    if len(engine.adapter_dirs) == 1:
        engine.model = engine.model.unload()
    else:
        with warnings.catch_warnings():  # "was active which is now deleted": the engine sets one per batch
            warnings.simplefilter("ignore", UserWarning)
            engine.model.delete_adapter(name)
    del engine.adapter_dirs[name]
    engine.models.remove(name)


def _forget_partial(model: Any, name: str) -> None:
    try:
        model.delete_adapter(name)
    except (ValueError, KeyError, AttributeError):
        pass
