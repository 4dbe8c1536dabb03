"""The ``transformers.TrainingArguments`` every trainer shares, from our argument names and the plan.

SFT (``sft.trl_config``) and the preference trainers (``dpo.trl_config``) add their own knobs on top;
the names map as the argument dataclasses document (``lr`` -> ``learning_rate``, ``epochs`` ->
``num_train_epochs``, ``batch_size`` / ``grad_accum`` as the plan decided them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .planning.plan import Plan
from .runtime.distributed import trainer_options


def training_kwargs(
    args: Any, plan: Plan, output_dir: Path, has_eval: bool, max_length: int | None = None
) -> dict[str, Any]:
    """Keyword arguments of the TRL config shared by every method (``max_length`` overrides the args')."""
    cpu = plan.device == "cpu"
    kwargs: dict[str, Any] = {"eval_strategy": "no"}
    if has_eval:
        kwargs = {
            "eval_strategy": "steps",
            "eval_steps": args.eval_steps or args.EVAL_EVERY,
            "per_device_eval_batch_size": plan.batch_size,
        }
    kwargs.update(
        output_dir=str(output_dir),
        learning_rate=args.learning_rate(plan.method),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps or -1,
        per_device_train_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.grad_accum,
        max_length=max_length or args.max_length,
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=args.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        warmup_steps=float(args.warmup_ratio),
        lr_scheduler_type=args.lr_scheduler,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        optim=plan.optim,
        torch_compile=plan.compile,
        use_liger_kernel=plan.liger,
        gradient_checkpointing=plan.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if plan.gradient_checkpointing else None,
        use_cpu=cpu,
        bf16=plan.dtype == "bf16" and not cpu,
        fp16=plan.dtype == "fp16" and not cpu,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        dataset_num_proc=None,
    )
    kwargs.update(trainer_options(args, plan.device))  # DDP / FSDP / DeepSpeed for a process group
    return kwargs
