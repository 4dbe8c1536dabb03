"""The tiny-model kit: real Hugging Face model folders and datasets built offline in seconds.

Tests, notebooks and the embedded default model (``--model tiny``) use these instead of a model hub::

    from kernel_magics.testing import make_tiny_model, tiny_dataset
    path = make_tiny_model("/tmp/tiny", arch="qwen2")     # config, safetensors, BPE tokenizer, chat template
    rows = tiny_dataset("sft")                             # packaged jsonl, >= 200 chat rows

The models are random-init Qwen2 / Llama configs (hidden 128, 4 heads of 32, 2 KV heads: vLLM's CPU
attention needs head_dim >= 32) with a byte-level BPE tokenizer trained here on the packaged data, so
English and Chinese text round-trip exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SwiftConfigError

DATA_DIR = Path(__file__).with_name("testing_data")
ARCHS = ("qwen2", "llama")
DATASETS = {"sft": "sft.jsonl", "dpo": "dpo.jsonl", "kto": "kto.jsonl"}
COMPLETE_MARKER = ".kernel_magics_complete"
KIT_VERSION = "2"  # bump when the recipe changes so old folders are rebuilt

# ChatML with generation markers, so trainers can put the loss on assistant tokens only, and Hermes-style
# tool calling the way Qwen2.5 renders it: the tools as JSON in the system turn, assistant calls as
# <tool_call>{"name": ..., "arguments": {...}}</tool_call>, tool results as <tool_response> user turns.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}"
    "{%- else %}{{- 'You are a helpful assistant.\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}"
    "{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments '"
    " + 'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, '"
    " + '\"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and tools and loop.first %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] or '' }}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{%- set call = call['function'] if call['function'] is defined else call %}"
    "{%- if message['content'] or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + call['name'] + '\", \"arguments\": ' }}"
    "{{- call['arguments'] if call['arguments'] is string else call['arguments'] | tojson }}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_EXTRA_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Fine-tuning adapts a pretrained language model to a new task with a small dataset.",
    "LoRA trains low-rank adapters while the base weights stay frozen.",
    "今天天气很好，我们一起去公园散步吧。",
    "大语言模型可以回答问题、写代码和翻译文本。",
    "请用中文回答：什么是机器学习？机器学习是让计算机从数据中学习规律的方法。",
    "Hello world! 你好，世界！ 1234567890 + - * / = ? . , ; : ' \" ( ) [ ] { }",
]


def tiny_dataset(kind: str = "sft") -> Path:
    """Path of a packaged jsonl dataset: ``sft`` (messages rows), ``dpo`` (prompt/chosen/rejected),
    ``kto`` (prompt/completion/label)."""
    if kind not in DATASETS:
        raise SwiftConfigError(f"unknown tiny dataset '{kind}'; use one of {', '.join(DATASETS)}")
    return DATA_DIR / DATASETS[kind]


def _corpus() -> list[str]:
    texts = list(_EXTRA_CORPUS)
    for name in DATASETS.values():
        with open(DATA_DIR / name, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                for value in row.values():
                    if isinstance(value, str):
                        texts.append(value)
                    elif isinstance(value, list):
                        texts.extend(m["content"] for m in value if isinstance(m, dict))
    return texts


def build_tokenizer(vocab_size: int = 2048):
    """Train a byte-level BPE tokenizer on the packaged data; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
        model_max_length=4096,
        padding_side="right",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _config(arch: str, vocab_size: int, tokenizer):  # noqa: ANN001
    common = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    from transformers import LlamaConfig

    return LlamaConfig(head_dim=32, **common)


def is_complete(path: str | os.PathLike[str]) -> bool:
    marker = Path(path) / COMPLETE_MARKER
    return marker.is_file() and marker.read_text().strip() == KIT_VERSION


@contextmanager
def staged_model_folder(target: Path) -> Iterator[Path]:
    """Build a model folder beside ``target``; on success mark it complete and swap it in atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        (staging / COMPLETE_MARKER).write_text(KIT_VERSION)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def make_tiny_model(path: str | os.PathLike[str], arch: str = "qwen2", *, seed: int = 0) -> Path:
    """Write a tiny random-init model folder at ``path`` and return it.

    The folder has config.json, model.safetensors, tokenizer files with a chat template and
    generation_config.json; ``AutoModelForCausalLM`` / ``AutoTokenizer`` load it offline, and so does
    vLLM. Deterministic for a ``seed``; returns at once when the folder is already complete. The folder
    appears atomically (built beside it, then renamed).
    """
    if arch not in ARCHS:
        raise SwiftConfigError(f"unknown tiny architecture '{arch}'; use one of {', '.join(ARCHS)}")
    target = Path(path).expanduser()
    if is_complete(target):
        return target

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    with staged_model_folder(target) as staging:
        tokenizer = build_tokenizer()
        config = _config(arch, len(tokenizer), tokenizer)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
            pad_token_id=tokenizer.pad_token_id,
            do_sample=False,
            max_new_tokens=64,
        )
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(
            f"# tiny-{arch} (kernel_magics test kit)\n\nRandom weights, seed {seed}; for tests and labs only.\n"
        )
    return target


def tiny_model_path(arch: str = "qwen2") -> Path:
    """Where the embedded tiny default lives in the kernel_magics cache (not built by this call)."""
    from .config import settings

    return settings.cache_path / "models" / f"tiny-{arch}"


def main() -> None:
    """``python -m kernel_magics.testing [ARCH ...]``: build the embedded tiny model(s) in the cache."""
    import sys

    for arch in sys.argv[1:] or ["qwen2"]:
        print(make_tiny_model(tiny_model_path(arch), arch))


if __name__ == "__main__":
    main()
