"""The exported GGUF runs in llama.cpp itself (through the ``xllamacpp`` bindings, a dev dependency): same
tokenization, same greedy tokens and log-probabilities as transformers, and the chat template works.
Without a working ``xllamacpp`` these tests skip saying why, and fail when KM_REQUIRE names xllamacpp."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kernel_magics.export.api import export

pytestmark = pytest.mark.needs("xllamacpp")

TEXTS = ["The quick brown fox 1234567 jumps", "你好，世界！今天天气很好。", "don't  stop\n\nme now"]


def llama_server(gguf_path: Path):
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(gguf_path)
    params.n_ctx = 256
    params.warmup = False
    params.use_jinja = True
    params.cpuparams.n_threads = 1
    return xlc.Server(params)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_llama_cpp_agrees_with_transformers(arch: str, tiny_model: Path, tiny_llama: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tiny_model if arch == "qwen2" else tiny_llama
    result = export(model_dir, outtype="f32", out_dir=tmp_path)
    server = llama_server(result.path)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    worst = 0.0
    for text in TEXTS:
        reply = server.handle_completions(
            {"prompt": text, "n_predict": 6, "temperature": 0, "logprobs": 1, "cache_prompt": False}
        )
        ids = tokenizer(text).input_ids
        assert reply["usage"]["prompt_tokens"] == len(ids), text  # same tokenization
        steps = reply["choices"][0]["logprobs"]["content"]
        generated = [step["id"] for step in steps]
        with torch.no_grad():
            want = model.generate(torch.tensor([ids]), max_new_tokens=len(generated), do_sample=False)
            logp = torch.log_softmax(model(want).logits[0, len(ids) - 1 : -1], dim=-1)
        assert generated == want[0, len(ids) :].tolist(), text
        for i, step in enumerate(steps):
            worst = max(worst, abs(step["logprob"] - logp[i, generated[i]].item()))
    print(f"{arch}: llama.cpp vs transformers, worst log-prob difference {worst:.1e}")
    assert worst < 2e-3

    messages = [{"role": "user", "content": "Translate 'tea' into Chinese."}]
    chat = server.handle_chat_completions({"messages": messages, "max_tokens": 2, "temperature": 0})
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    assert chat["usage"]["prompt_tokens"] == len(expected)


def test_quantized_gguf_runs_in_llama_cpp(tiny_model: Path, tmp_path: Path):
    result = export(tiny_model, outtype="q4_0", out_dir=tmp_path)
    reply = llama_server(result.path).handle_completions({"prompt": "Hello", "n_predict": 4, "temperature": 0})
    assert reply["usage"]["completion_tokens"] >= 1


def test_llama_cpp_adds_the_bos_token_when_the_tokenizer_does(tiny_llama: Path, tmp_path: Path):
    from test_export_gguf import with_bos_tokenizer
    from transformers import AutoTokenizer

    model_dir = with_bos_tokenizer(tiny_llama, tmp_path / "bos")
    result = export(model_dir, out_dir=tmp_path / "out")
    reply = llama_server(result.path).handle_completions({"prompt": "hello world", "n_predict": 1, "temperature": 0})
    assert reply["usage"]["prompt_tokens"] == len(AutoTokenizer.from_pretrained(model_dir)("hello world").input_ids)
