"""The launcher's words in English and Chinese (README.zh-CN's vocabulary).

Labels and help of the knobs come from the argument spec (English); :data:`ARG_ZH` gives the Chinese label
and help of the common ones, and a knob it does not list shows its spec's English help, so a new knob
needs no entry here to appear. Light module: no IPython, no widgets.
"""

from __future__ import annotations

import locale
import os

LANGUAGES = ("en", "zh")

UI: dict[str, tuple[str, str]] = {  # key -> (English, Chinese)
    "title": ("kernel_magics launcher", "kernel_magics 启动面板"),
    "find": ("Find a model", "找模型"),
    "download": ("Download", "下载"),
    "finetune": ("Fine-tune", "微调"),
    "serve": ("Serve & chat", "部署与对话"),
    "merge": ("Merge & export", "合并与导出"),
    "evaluate": ("Evaluate", "评测"),
    "runs": ("Runs", "训练记录"),
    "sft": ("SFT", "SFT"),
    "dpo": ("Preference (DPO, ORPO, KTO, SimPO)", "偏好学习（DPO、ORPO、KTO、SimPO）"),
    "grpo": ("GRPO (online RL)", "在线强化学习 GRPO"),
    "vlm": ("Vision-language SFT", "图文 SFT"),
    "run": ("Run", "运行"),
    "insert": ("Insert cell", "插入单元格"),
    "more": ("more", "更多参数"),
    "preview": ("Preview", "预览"),
    "refresh": ("Refresh", "刷新"),
    "attach": ("Dashboard", "看板"),
    "resume": ("Resume", "续训"),
    "stop": ("Stop", "停止"),
    "default": ("default", "默认"),
    "plan": ("Plan", "训练计划"),
    "plan_wait": ("working out the plan…", "正在估算训练计划…"),
    "plan_none": ("no plan: ", "无法估算："),
    "peak": ("estimated peak memory", "估算峰值显存"),
    "fits": ("fits", "放得下"),
    "no_fit": ("does not fit", "放不下"),
    "why": ("why", "原因"),
    "cell": ("the equivalent cell", "等价的单元格"),
    "inserted": ("inserted below this cell", "已插入到本单元格下方"),
    "copy": (
        "this front end does not let a widget add cells: copy the cell above",
        "当前前端不允许面板插入单元格：请复制上面的单元格",
    ),
    "no_runs": ("no runs in the workspace yet", "工作区里还没有训练"),
    "use_model": ("model for the forms: ", "表单使用的模型："),
    "serve_ready": (
        "Serve & chat is set to serve this run's adapter as 'tuned': ",
        "“部署与对话”已填好，把这次训练的适配器部署为 'tuned'：",
    ),
}

ARG_ZH: dict[str, tuple[str, str]] = {  # knob -> (Chinese label, Chinese help)
    "model": ("模型", "模型名（tiny、smollm2）、本地目录或 hub id"),
    "dataset": ("数据集", "jsonl / json / csv / parquet 文件、save_to_disk 目录或 hub 数据集 id"),
    "method": ("方法", "lora、qlora（4 位）、full（全量），或 auto（按设备和显存选择）"),
    "max_steps": ("步数", "训练这么多个优化步后停止"),
    "lr": ("学习率", "学习率"),
    "epochs": ("轮数", "数据过几遍（设置了步数时忽略）"),
    "batch_size": ("批大小", "每个设备每步的行数"),
    "grad_accum": ("梯度累积", "每个优化步累积的步数"),
    "max_length": ("最大长度", "套用对话模板后最长一行的 token 数"),
    "dtype": ("精度", "权重与计算的精度"),
    "device": ("设备", "auto、cpu、cuda、cuda:N 或 mps"),
    "lora_r": ("LoRA 秩", "LoRA 的秩"),
    "lora_alpha": ("LoRA alpha", "LoRA 缩放系数（scale = alpha / r）"),
    "loss": ("损失", "偏好学习或 GRPO 的损失"),
    "beta": ("beta", "偏好项（或 KL 项）的强度"),
    "reward": ("奖励函数", "笔记本里定义的函数名、内置奖励或 module:function"),
    "adapter": ("适配器", "接着训练或加载的 LoRA 适配器目录"),
    "adapters": ("适配器", "按名字加载的适配器：NAME=目录（每行一个）"),
    "packing": ("拼接", "把多行拼进 max_length 长的序列（无填充）"),
    "seed": ("随机种子", "随机种子（数据顺序、LoRA 初始化、dropout）"),
    "output_dir": ("输出目录", "训练目录"),
    "template": ("模板", "图片数据行如何变成对话"),
    "max_pixels": ("最大像素", "图文模型：把图片缩放到最多这么多像素"),
    "train_vision": ("训练视觉塔", "图文模型：视觉塔也参与训练"),
    "gradient_checkpointing": ("梯度检查点", "重算激活以节省显存"),
    "model_id": ("模型 id", "要下载的 hub 模型 id"),
    "backend": ("引擎", "vllm 或 transformers"),
    "port": ("端口", "服务端口"),
    "base": ("基座模型", "适配器的基座模型"),
    "out_dir": ("输出目录", "输出目录"),
    "format": ("格式", "导出格式"),
    "model_dir": ("模型目录", "要导出的模型目录"),
    "metrics": ("指标", "评测指标"),
    "url": ("服务地址", "OpenAI 兼容服务的地址"),
    "compare": ("对比", "并排对比的模型名，逗号分隔"),
    "num_generations": ("每个提示的生成数", "每个提示采样的回答数"),
}


def default_language() -> str:
    """``zh`` when the locale (LC_ALL / LC_MESSAGES / LANG, then Python's) is Chinese, else ``en``."""
    names = [os.environ.get(key, "") for key in ("LC_ALL", "LC_MESSAGES", "LANG")]
    try:
        names.append(locale.getlocale()[0] or "")
    except ValueError:
        pass
    first = next((name for name in names if name and name not in ("C", "POSIX")), "")
    return "zh" if first.lower().startswith("zh") else "en"


def check_language(value: str) -> str:
    """``value`` when it is a language the launcher speaks (raises one line otherwise)."""
    from ..errors import SwiftConfigError

    text = str(value).strip().lower()
    if text not in LANGUAGES:
        raise SwiftConfigError(f"language must be one of {', '.join(LANGUAGES)}, got '{value}'")
    return text


def word(key: str, language: str) -> str:
    """The launcher's word for ``key`` in ``language``."""
    english, chinese = UI[key]
    return chinese if language == "zh" else english


def arg_label(name: str, language: str) -> str:
    """A knob's label: its Chinese name where known, else its flag spelling without dashes."""
    if language == "zh" and name in ARG_ZH:
        return ARG_ZH[name][0]
    return name.replace("_", " ")


def arg_help(name: str, english_help: str, language: str) -> str:
    """A knob's help: the Chinese sentence where known, else the spec's English help."""
    if language == "zh" and name in ARG_ZH:
        return ARG_ZH[name][1]
    return english_help
