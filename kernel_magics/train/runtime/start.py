"""The one launcher of every training method: ``launch(entry, arguments)``.

A public function (``km.sft``, ``km.dpo``, ``km.grpo``, ...) fills its argument dataclass and calls
:func:`launch` with its registry entry (:mod:`.methods`). In the caller's thread, so mistakes fail at once
with one line, the launcher

1. checks the arguments and the output folder (:func:`.launching.check_start`);
2. resolves the model (by default the base of the adapter it continues, if the method takes ``adapter``);
   a vision-language model hands over to the entry's ``on_images``;
3. runs the entry's ``prepare`` hook (rows read and checked, no weights);
4. plans the run for the device (:func:`.launching.plan_run`);
5. writes the run folder with what the entry's ``record`` hook adds (:func:`.launching.write_run`);

then starts the :class:`~.run.Run`, whose thread builds the trainer with the entry's ``trainer`` hook.
Nothing here names a method: what differs is in the entry and its hooks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...argspec import load
from ...errors import SwiftConfigError
from ..methods.registry import TrainingMethod


@dataclass
class RunRecord:
    """What a method's ``record`` hook adds to its run: ``config.json``'s ``data`` and ``extra`` (keys that
    are :class:`~.run_config.RunConfig` fields set them; any other is kept in its ``extra``), the rows
    to keep as ``dataset.jsonl`` (None: the dataset is a path), the first log lines, and ``written``, called
    with the :class:`~.run.Run` once its folder holds ``config.json`` (files of its own, live objects)."""

    data: dict[str, Any]
    lines: list[str]
    rows: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    written: Callable[[Any], None] | None = None


def rows_summary(data: Any) -> dict[str, Any]:
    """``config.json``'s ``data`` for checked rows (a :class:`~kernel_magics.data.prepare.PreparedData`)."""
    return {"source": data.source, "format": data.format, "rows": len(data), "skipped": len(data.skipped)}


def launch(entry: TrainingMethod, arguments: Any, *, verbose: bool = True) -> Any:
    """Check, prepare, plan and write the run of ``entry`` for ``arguments``; start it and return the ``Run``."""
    run, inputs = create_run(entry, arguments, verbose=verbose)
    return start_run(run, inputs)


def start_run(run: Any, inputs: Any) -> Any:
    """Register ``run`` as a live job (``%swift stop``, Ctrl-C and kernel shutdown see it) and start it."""
    from ...jobs import register_live

    register_live(run)
    return run.start(prepared=inputs)


def create_run(entry: TrainingMethod, arguments: Any, *, verbose: bool = True) -> tuple[Any, Any]:
    """Everything :func:`launch` does but starting: the ``Run`` (not yet a live job, so one never started
    does not hold up ``stop_all``) and the inputs its trainer gets; :func:`start_run` starts it."""
    from ...config import settings
    from ...device import select_device
    from ...hub import is_vision_model, resolve_model
    from ...jobs import unregister_live
    from .launching import check_start, device_record, plan_run, recorded_arguments, write_run
    from .run_config import RunConfig

    args = _narrowed(entry, arguments)
    start = check_start(args)
    adapter_dir = _continued_adapter(args)
    model_name = str(args.model or _adapter_base(adapter_dir) or settings.default_model)
    info = select_device(args.device)
    model_path = resolve_model(model_name)
    if entry.on_images is not None and is_vision_model(model_path):
        return create_run(entry.on_images, arguments, verbose=verbose)
    inputs = load(entry.prepare)(args, model_path, trust_remote_code=start.trust_remote_code)
    kind = entry.kind_of(args)
    plan, estimates = plan_run(args, model_path, info, args.batch_size * entry.sequences_per_row.get(kind, 1))
    if adapter_dir is not None and plan.method == "full":
        raise SwiftConfigError(
            "--adapter continues LoRA training, but the plan is full fine-tuning; use --method lora or qlora"
        )
    record: RunRecord = load(entry.record)(args, inputs, plan)
    config = RunConfig(
        command=entry.name, kind=kind, trainer=entry.trainer, model=model_name, model_path=str(model_path), plan=plan,
        data=record.data, trust_remote_code=start.trust_remote_code, device=device_record(info), estimate_gb=estimates,
        **recorded_arguments(args),
    )  # fmt: skip
    config.record(record.extra)
    run = write_run(start, config, record.rows, record.lines, verbose=verbose)
    if record.written is not None:
        record.written(run)
    unregister_live(run)  # live once start_run starts it
    return run, inputs


def _narrowed(entry: TrainingMethod, arguments: Any) -> Any:
    """``arguments`` as the class the run keeps (text SFT drops the vision knobs), ``output_dir`` a string."""
    cls = load(entry.run_arguments or entry.arguments)
    if type(arguments) is not cls:
        arguments = cls(**{f.name: getattr(arguments, f.name) for f in dataclasses.fields(cls)})
    if isinstance(arguments.output_dir, os.PathLike):
        arguments.output_dir = os.fspath(arguments.output_dir)
    return arguments


def _continued_adapter(args: Any) -> Any:
    """The folder of the LoRA adapter the run continues (methods with an ``adapter`` knob), stored back
    into ``args`` as a path; None for a new adapter."""
    if getattr(args, "adapter", None) is None:
        return None
    from ..methods.continuing import adapter_folder

    folder = adapter_folder(args.adapter)
    args.adapter = str(folder)
    return folder


def _adapter_base(adapter_dir: Any) -> str | None:
    if adapter_dir is None:
        return None
    from ...adapters import trained_base

    return trained_base(adapter_dir)
