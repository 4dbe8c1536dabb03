"""Writing a Hugging Face model folder as one GGUF file (llama.cpp, Ollama, LM Studio).

Built on the ``gguf`` package's writer, tensor-name map and numpy quantizers, so no llama.cpp checkout
is needed. Supported: Llama / Mistral and Qwen2 decoder models with a byte-level BPE tokenizer
(Llama 3, Qwen2 / 2.5 and the embedded tiny models). Output types: ``f32``, ``f16``, ``bf16``,
``q8_0`` and ``q4_0``; norms and biases stay float32 as llama.cpp expects.

Two details matter for llama.cpp to run the file:

* Llama uses llama.cpp's *interleaved* rotary layout, so the rows of ``q_proj`` / ``k_proj`` are
  permuted per head (:func:`permute_qk`); Qwen2 uses the NeoX layout and keeps them as they are.
* The chat template is stored without ``{% generation %}`` markers (a transformers extension
  for assistant-token masks that llama.cpp's template engine does not know).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters import read_json
from ..errors import SwiftConfigError, SwiftModelError

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
# HF architecture -> (gguf architecture name, rotary layout needs the q/k permutation)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}
# pre-tokenizer split patterns llama.cpp knows by name (tokenizer.ggml.pre)
_KNOWN_SPLITS = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)|\\s+": "qwen2",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)|\\s+": "llama-bpe",
}
_GENERATION_TAG = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


@dataclass(frozen=True)
class GGUFFile:
    """What :func:`write_gguf` wrote."""

    path: Path
    architecture: str
    outtype: str
    tensor_count: int
    tokenizer_pre: str


def permute_qk(weight: Any, n_head: int) -> Any:
    """Reorder the rows of a q/k projection from HF's half-split rotary layout to llama.cpp's
    interleaved one (each head's rows ``[0..d/2) [d/2..d)`` become pairs ``(0, d/2), (1, d/2+1)...``)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def unpermute_qk(weight: Any, n_head: int) -> Any:
    """Inverse of :func:`permute_qk` (GGUF layout back to HF's)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def strip_generation_markers(template: str) -> str:
    """Remove ``{% generation %}`` / ``{% endgeneration %}`` tags, keeping what they enclose."""
    return _GENERATION_TAG.sub("", template)


def iter_safetensors(model_dir: Path) -> Iterator[tuple[str, Any]]:
    """(name, float32 numpy array) for every tensor of the folder's safetensors files."""
    import torch
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise SwiftModelError(
            f"{model_dir} has no .safetensors weights; GGUF export reads safetensors (merge or re-save the model)"
        )
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, fh.get_tensor(name).to(torch.float32).numpy()


def _tokenizer_vocab(model_dir: Path, vocab_size: int) -> dict[str, Any]:
    """Tokens, token types, merges and the pre-tokenizer name from ``tokenizer.json``."""
    import gguf

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise SwiftModelError(f"{model_dir} has no tokenizer.json; GGUF export needs a fast (tokenizers) tokenizer")
    data = _loaded_tokenizer_json(model_dir) or read_json(path)
    model = data.get("model") or {}
    pre = data.get("pre_tokenizer") or {}
    pre_steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    byte_level = any(step.get("type") == "ByteLevel" for step in pre_steps)
    if model.get("type") != "BPE" or not byte_level:
        raise SwiftModelError(
            f"GGUF export supports byte-level BPE tokenizers (Llama 3, Qwen2); {model_dir.name} has "
            f"{model.get('type')} with pre-tokenizer {pre.get('type')}; use llama.cpp's convert_hf_to_gguf.py"
        )
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    added = {t["content"]: t for t in data.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = token["id"]
    size = max(vocab_size, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, index in vocab.items():
        tokens[index] = text
        if text in added:
            types[index] = int(gguf.TokenType.CONTROL if added[text].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            types[index] = int(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    split = next((s for s in pre_steps if s.get("type") == "Split"), None)
    if split is None:
        pre_name = "gpt-2"  # ByteLevel with its own (GPT-2) regex
    else:
        pattern = (split.get("pattern") or {}).get("Regex", "")
        pre_name = _KNOWN_SPLITS.get(pattern, "default")
    return {"tokens": tokens, "types": types, "merges": merges, "pre": pre_name, "added": added}


def _loaded_tokenizer_json(model_dir: Path) -> dict[str, Any] | None:
    """The tokenizer as transformers builds it (its class may replace the file's pre-tokenizer, as
    ``Qwen2Tokenizer`` does): the GGUF must split text the way the model saw it in training."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return json.loads(tokenizer.backend_tokenizer.to_str())
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def adds_bos_token(model_dir: Path, bos_id: int | None) -> bool:
    """Does the tokenizer put the bos token before every text (Llama 3 does, Qwen2 does not)? Asked of
    the tokenizer itself, since newer tokenizer_config.json files no longer say ``add_bos_token``."""
    from transformers import AutoTokenizer

    if bos_id is None:
        return False
    try:
        ids = AutoTokenizer.from_pretrained(model_dir)("a", add_special_tokens=True).input_ids
    except (OSError, ValueError, TypeError):
        return False
    return bool(ids) and ids[0] == bos_id


def _special_ids(model_dir: Path, config: dict[str, Any], tokens: list[str]) -> dict[str, int]:
    """bos / eos / pad / unk ids from tokenizer_config.json, falling back to config.json."""
    tok_config = (
        read_json(model_dir / "tokenizer_config.json") if (model_dir / "tokenizer_config.json").is_file() else {}
    )
    index = {t: i for i, t in enumerate(tokens)}
    ids: dict[str, int] = {}
    for kind in ("bos", "eos", "pad", "unk"):
        token = tok_config.get(f"{kind}_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str) and token in index:
            ids[kind] = index[token]
            continue
        value = config.get(f"{kind}_token_id")
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            ids[kind] = value
    return ids


def _chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    tok_config_path = model_dir / "tokenizer_config.json"
    template = read_json(tok_config_path).get("chat_template") if tok_config_path.is_file() else None
    return template if isinstance(template, str) else None


def _rope_settings(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(rope theta, the scaling parameters) of a config; only scalings llama.cpp reads are accepted."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    params["rope_type"] = str(params.get("rope_type", params.get("type", "default")) or "default")
    if params["rope_type"] not in ("default", "linear", "llama3"):
        raise SwiftModelError(
            f"GGUF export here supports default, linear and llama3 RoPE; this model uses '{params['rope_type']}' "
            "RoPE scaling; use llama.cpp's convert_hf_to_gguf.py"
        )
    return theta, params


def llama3_rope_factors(params: dict[str, Any], theta: float, head_dim: int) -> Any:
    """Per-frequency divisors of Llama 3.1's RoPE scaling (the ``rope_freqs`` tensor llama.cpp reads):
    high frequencies are kept, low ones divided by ``factor``, the band between smoothly interpolated."""
    import numpy as np

    factor = float(params.get("factor", 8.0))
    low, high = float(params.get("low_freq_factor", 1.0)), float(params.get("high_freq_factor", 4.0))
    old_context = float(params.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * np.pi / freqs
    smooth = (old_context / wavelen - low) / (high - low)
    between = 1.0 / ((1 - smooth) / factor + smooth)
    factors = np.where(wavelen < old_context / high, 1.0, np.where(wavelen > old_context / low, factor, between))
    return factors.astype(np.float32)


def _data_for(name: str, data: Any, outtype: str) -> tuple[Any, Any]:
    """(array, raw ggml type) of one tensor in the chosen output type (1-D tensors stay float32)."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType
    if data.ndim <= 1 or outtype == "f32":
        return data.astype(np.float32), qtype.F32
    if outtype == "f16":
        return data.astype(np.float16), qtype.F16
    chosen = {"bf16": qtype.BF16, "q8_0": qtype.Q8_0, "q4_0": qtype.Q4_0}[outtype]
    block = gguf.GGML_QUANT_SIZES[chosen][0]
    if data.shape[-1] % block:
        return data.astype(np.float16), qtype.F16  # rows not a whole number of blocks: llama.cpp does the same
    try:
        return gguf.quants.quantize(data, chosen), chosen
    except gguf.QuantError:
        return data.astype(np.float16), qtype.F16


@dataclass(frozen=True)
class _Shape:
    """What the GGUF header and tensor names need from a model's ``config.json``."""

    hf_arch: str
    arch_name: str  # gguf's name of the architecture
    permute: bool  # q / k rows reordered for llama.cpp's rotary layout
    n_layers: int
    n_head: int
    n_kv: int
    hidden: int
    head_dim: int
    theta: float
    rope: dict[str, Any]
    tied: bool


def _shape(model_dir: Path, config: dict[str, Any]) -> _Shape:
    """The model's shape, or one line saying why GGUF export cannot write it."""
    if config.get("quantization_config"):
        raise SwiftModelError(f"{model_dir} holds quantized weights; export the unquantized (merged) model to GGUF")
    hf_arch = (config.get("architectures") or ["?"])[0]
    if hf_arch not in ARCHITECTURES:
        raise SwiftModelError(
            f"GGUF export supports {', '.join(ARCHITECTURES)}; {model_dir.name} is {hf_arch}; "
            "use llama.cpp's convert_hf_to_gguf.py for other architectures"
        )
    arch_name, permute = ARCHITECTURES[hf_arch]
    theta, rope = _rope_settings(config)
    if rope["rope_type"] == "llama3" and arch_name != "llama":
        raise SwiftModelError(f"llama3 RoPE scaling on a {hf_arch} is not supported by GGUF export")
    n_head, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    return _Shape(
        hf_arch=hf_arch,
        arch_name=arch_name,
        permute=permute,
        n_layers=int(config["num_hidden_layers"]),
        n_head=n_head,
        n_kv=int(config.get("num_key_value_heads") or n_head),
        hidden=hidden,
        head_dim=int(config.get("head_dim") or hidden // n_head),
        theta=theta,
        rope=rope,
        tied=bool(config.get("tie_word_embeddings", False)),
    )


def _add_hyperparameters(writer: Any, shape: _Shape, config: dict[str, Any], outtype: str, n_tokens: int) -> None:
    import gguf

    writer.add_context_length(int(config.get("max_position_embeddings") or 4096))
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.n_layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_kv)
    if shape.head_dim != shape.hidden // shape.n_head:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(shape.theta)
    if shape.rope["rope_type"] == "linear" and shape.rope.get("factor"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(shape.rope["factor"]))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(n_tokens)
    file_types = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}
    file_types["q4_0"] = "MOSTLY_Q4_0"
    writer.add_file_type(int(getattr(gguf.LlamaFileType, file_types[outtype])))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tokenizer(writer: Any, model_dir: Path, config: dict[str, Any], vocab: dict[str, Any]) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab["pre"])
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    writer.add_token_merges(vocab["merges"])
    special = _special_ids(model_dir, config, vocab["tokens"])
    for kind, token_id in special.items():
        getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(adds_bos_token(model_dir, special.get("bos")))
    template = _chat_template(model_dir)
    if template:
        writer.add_chat_template(strip_generation_markers(template))


def _add_tensors(writer: Any, model_dir: Path, shape: _Shape, outtype: str) -> int:
    """Add every weight under its GGUF name (q / k permuted where the layout needs it); returns the count."""
    import gguf

    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == shape.arch_name)
    names = gguf.get_tensor_name_map(arch, shape.n_layers)
    count = 0
    if shape.rope["rope_type"] == "llama3":
        factors = llama3_rope_factors(shape.rope, shape.theta, shape.head_dim)
        writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", factors)
        count += 1
    for hf_name, data in iter_safetensors(model_dir):
        if hf_name.endswith("rotary_emb.inv_freq") or (shape.tied and hf_name == "lm_head.weight"):
            continue
        new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise SwiftModelError(f"GGUF export: no GGUF name for tensor '{hf_name}' of {shape.hf_arch}")
        if shape.permute and hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, shape.n_head)
        elif shape.permute and hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, shape.n_kv)
        array, raw_type = _data_for(new_name, data, outtype)
        writer.add_tensor(new_name, array, raw_dtype=raw_type)
        count += 1
    return count


def write_gguf(model_dir: Path, path: Path, outtype: str = "f16", name: str | None = None) -> GGUFFile:
    """Write ``model_dir`` (a merged HF folder) to the GGUF file ``path`` in ``outtype``."""
    import gguf

    if outtype not in OUTTYPES:
        raise SwiftConfigError(f"GGUF outtype '{outtype}' is not one of {', '.join(OUTTYPES)}")
    config = read_json(model_dir / "config.json")
    shape = _shape(model_dir, config)
    vocab = _tokenizer_vocab(model_dir, int(config.get("vocab_size") or 0))
    writer = gguf.GGUFWriter(str(path), shape.arch_name)
    try:
        writer.add_name(name or model_dir.name)
        _add_hyperparameters(writer, shape, config, outtype, len(vocab["tokens"]))
        _add_tokenizer(writer, model_dir, config, vocab)
        count = _add_tensors(writer, model_dir, shape, outtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return GGUFFile(Path(path), shape.arch_name, outtype, count, vocab["pre"])


def write_modelfile(gguf_path: Path) -> Path:
    """An Ollama ``Modelfile`` beside the GGUF (``ollama create NAME -f Modelfile``)."""
    modelfile = gguf_path.with_name("Modelfile")
    modelfile.write_text(f"FROM ./{gguf_path.name}\n", encoding="utf-8")
    return modelfile
