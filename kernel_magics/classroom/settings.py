"""The teacher's settings of the classroom service: one dataclass, the single source of every knob.

``python -m kernel_magics classroom --flags`` (and ``jupyterhub_config.py``'s service command) fill it;
its fields are the subcommand's flags (:func:`kernel_magics.argspec.args_from`). Light module.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..argspec import knob
from ..errors import SwiftConfigError

CHAT_POLICIES = ("own", "everyone")
_GROUP = re.compile(r"^[\w.\-@]*$")


@dataclass
class ClassroomSettings:
    """What the teacher decides: the model, who teaches, adapter limits, fairness and training slots."""

    model: str = knob("tiny", "base model the class shares: 'tiny', a local folder or a hub id", short="-m")
    folder: str | None = knob(
        None,
        "where uploaded adapters are kept (one sub-folder per student)",
        default_help="km-classroom/ in the service's working folder",
    )
    host: str | None = knob(None, "address to bind", default_help="from JUPYTERHUB_SERVICE_URL, else 127.0.0.1")
    port: int | None = knob(None, "port to bind", default_help="from JUPYTERHUB_SERVICE_URL, else 8765")
    backend: str = knob("transformers", "engine that serves the base and the adapters: transformers (peft) or vllm (multi-LoRA)")
    device: str = knob("auto", "auto, cpu, cuda or cuda:N")
    teacher_group: str = knob("teachers", "hub group whose members are teachers (hub admins always are)")
    chat_policy: str = knob("own", "whose adapters a student may chat with", choices=CHAT_POLICIES)
    max_rank: int = knob(64, "largest LoRA rank an upload may have")
    max_adapter_mb: float = knob(200.0, "largest upload (all files of one adapter) in MiB")
    adapters_per_student: int = knob(5, "adapters one student may have served at once")
    max_batch_size: int = knob(16, "requests generated together by the engine (its capacity)")
    per_user_concurrency: int = knob(4, "requests of one user inside the engine at once (the rest wait in line)")
    per_user_waiting: int = knob(64, "requests of one user waiting in line before 503 + Retry-After")
    tokens_per_minute: int = knob(20000, "prompt + reply tokens one user may use per minute (429 beyond; 0 = no limit)")
    default_max_tokens: int = knob(512, "reply length of chat requests that name none")
    train_slots: int = knob(1, "training runs that hold a slot at once, per GPU")
    gpus: int = knob(1, "GPUs the training slots are counted for")
    slot_time_limit_min: float = knob(30.0, "longest a run may hold a slot, in minutes")
    heartbeat_timeout_s: float = knob(60.0, "a slot whose holder sends no heartbeat this long is freed")

    def check(self) -> None:
        """One-line errors for values the service cannot work with."""
        positive = {
            "max_rank": self.max_rank,
            "max_adapter_mb": self.max_adapter_mb,
            "adapters_per_student": self.adapters_per_student,
            "max_batch_size": self.max_batch_size,
            "per_user_concurrency": self.per_user_concurrency,
            "per_user_waiting": self.per_user_waiting,
            "train_slots": self.train_slots,
            "gpus": self.gpus,
            "slot_time_limit_min": self.slot_time_limit_min,
            "heartbeat_timeout_s": self.heartbeat_timeout_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SwiftConfigError(f"classroom --{name.replace('_', '-')} must be positive, got {value}")
        if self.tokens_per_minute < 0:
            raise SwiftConfigError(f"classroom --tokens-per-minute must be 0 (no limit) or more, got {self.tokens_per_minute}")
        if self.chat_policy not in CHAT_POLICIES:
            raise SwiftConfigError(f"classroom --chat-policy must be one of {', '.join(CHAT_POLICIES)}, got {self.chat_policy!r}")
        if not _GROUP.match(self.teacher_group):
            raise SwiftConfigError(f"classroom --teacher-group {self.teacher_group!r} is not a hub group name")

    @property
    def total_slots(self) -> int:
        return self.train_slots * self.gpus

    def adapter_folder(self) -> str:
        return self.folder or os.path.join(os.getcwd(), "km-classroom")
