"""lm-eval benchmarks: km.evaluate(model, tasks=...), local task files, errors, km.compare_benchmarks, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.bench.results import BenchmarkResult, TaskScore
from kernel_magics.errors import SwiftConfigError, SwiftUsageError

pytest.importorskip("lm_eval")

DATA = Path(km.__file__).parent / "bench" / "tasks" / "data"


def _rows(name: str, n: int) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()[:n]]


def _direct_accuracy(model_dir: Path, rows: list[dict]) -> float:
    """Zero-shot accuracy on km_general_en rows computed without lm-eval: the choice whose tokens after
    "Question: ...\\nAnswer:" have the highest summed log-probability."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    hits = 0
    for row in rows:
        context = f"Question: {row['question']}\nAnswer:"
        scores = []
        for choice in row["choices"]:
            context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
            whole = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
            scores.append(sum(float(logp[i - 1, whole[i]]) for i in range(len(context_ids), len(whole))))
        hits += max(range(len(scores)), key=scores.__getitem__) == row["answer"]
    return hits / len(rows)


def test_tiny_scores_equal_a_direct_loglikelihood_argmax_and_are_saved(tiny_model: Path, workspace: Path):
    result = km.evaluate("tiny", tasks=["km_general_en", "km_ceval_zh"], limit=12, num_fewshot=0)
    assert isinstance(result, BenchmarkResult)
    assert result.score("km_general_en") == pytest.approx(
        _direct_accuracy(tiny_model, _rows("general_en_test.jsonl", 12))
    )
    frame = result.to_pandas()
    assert set(frame["task"]) == {"km_general_en", "km_ceval_zh"} and set(frame["samples"]) == {12}
    acc = frame[frame["metric"] == "acc"].set_index("task")
    for task, row in acc.iterrows():  # lm-eval's stderr of a mean of 0/1 scores: sqrt(p (1 - p) / (n - 1))
        assert row["stderr"] == pytest.approx(math.sqrt(row["value"] * (1 - row["value"]) / 11)), task
    saved = json.loads(result.path.read_text(encoding="utf-8"))
    assert result.path.parent == workspace / "benchmarks" and not list(result.path.parent.glob(".*.tmp"))
    assert {(s["task"], s["metric"], s["value"]) for s in saved["scores"]} == {
        (s.task, s.metric, s.value) for s in result.scores
    }
    assert "km_ceval_zh" in result._repr_html_() and "±" in result.to_text()


def test_an_evaluation_outside_a_repository_prints_no_git_error_and_skips_the_environment_report(
    tiny_model: Path, workspace: Path, tmp_path: Path, monkeypatch, capfd
):
    from lm_eval import evaluator

    originals = (evaluator.get_git_commit_hash, evaluator.add_env_info)
    monkeypatch.chdir(tmp_path)  # not a git repository: lm-eval's `git describe` would print "fatal: ..."
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    km.evaluate("tiny", tasks=["km_general_en"], limit=2, num_fewshot=0)
    assert "fatal" not in capfd.readouterr().err
    assert (evaluator.get_git_commit_hash, evaluator.add_env_info) == originals  # put back afterwards


def test_local_task_yaml_and_folder(tiny_model: Path, workspace: Path, tmp_path: Path):
    rows = _rows("general_en_test.jsonl", 3)
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    folder = tmp_path / "tasks"
    folder.mkdir()
    yaml_text = (DATA.parent / "km_general_en.yaml").read_text(encoding="utf-8")
    yaml_text = yaml_text.replace("task: km_general_en", "task: my_quiz").replace(
        "    dev: data/general_en_dev.jsonl\n    test: data/general_en_test.jsonl", f"    test: {data}"
    )
    (folder / "my_quiz.yaml").write_text(yaml_text.replace("fewshot_split: dev\n", ""), encoding="utf-8")
    by_file = km.evaluate("tiny", tasks=str(folder / "my_quiz.yaml"))
    by_folder = km.evaluate("tiny", tasks=[str(folder)])
    assert by_file.to_pandas()["samples"].tolist() == [3, 3]
    assert by_file.score("my_quiz") == by_folder.score("my_quiz") == pytest.approx(_direct_accuracy(tiny_model, rows))


def test_unknown_task_and_offline_hub_task_fail_in_one_line(tiny_model: Path, workspace: Path, monkeypatch):
    with pytest.raises(SwiftUsageError, match=r"unknown lm-eval task 'km_general_eng'; did you mean km_general_en"):
        km.evaluate("tiny", tasks=["km_general_eng"])
    with pytest.raises(SwiftUsageError, match="does not exist"):
        km.evaluate("tiny", tasks=["./missing/task.yaml"])
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SwiftConfigError) as info:
        km.evaluate("tiny", tasks=["arc_easy"], limit=2)
    message = str(info.value)
    assert "'arc_easy' needs the Hub dataset 'allenai/ai2_arc'" in message and "dataset_path: json" in message
    assert "\n" not in message and len(message) < 320
    from kernel_magics.bench.registry import TaskSelection, hub_dataset_error, registry_files

    selection = TaskSelection(["arc_easy"], files={"arc_easy": registry_files()["arc_easy"]})
    failed = hub_dataset_error(selection, ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub"))
    assert failed is not None and "'arc_easy' needs the Hub dataset 'allenai/ai2_arc'" in str(failed)
    assert hub_dataset_error(selection, ValueError("metric acc_foo is not registered")) is None


@pytest.fixture(scope="module")
def lora_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(5)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    path = tmp_path_factory.mktemp("bench-ws") / "runs" / "sft-1" / "adapter"
    model.save_pretrained(path)
    return path


def test_adapter_unmerged_scores_as_its_merged_folder_and_compares_with_the_base(
    tiny_model: Path, lora_adapter: Path, workspace: Path
):
    tasks = ["km_general_en"]
    tuned = km.evaluate("tiny", tasks=tasks, adapter=lora_adapter, limit=16)
    merged = km.evaluate(km.merge("tiny", lora_adapter, out_dir=workspace / "merged"), tasks=tasks, limit=16)
    assert str(lora_adapter) in tuned.source and [s.value for s in tuned.scores] == [s.value for s in merged.scores]
    table = km.compare_benchmarks("tiny", [tuned], tasks=tasks, limit=16)  # the base runs, the result is reused
    frame = table.to_pandas().set_index("metric")
    base, label = table.base, table.labels()[1]
    assert base.model == "tiny" and base.source == str(tiny_model) and table.others == [tuned]
    assert frame.loc["acc", "tiny"] == base.score("km_general_en")
    assert frame.loc["acc", f"Δ {label}"] == pytest.approx(tuned.score("km_general_en") - base.score("km_general_en"))


def _result(label: str, value: float, stderr: float) -> BenchmarkResult:
    return BenchmarkResult(label, label, [TaskScore("quiz", "acc", value, stderr, 60)])


def test_compare_benchmarks_differences_stderr_and_flagged_drops():
    base = _result("base", 0.60, 0.03)
    same = _result("tuned", 0.55, 0.04)  # -0.05 vs 2 x 0.05: kept
    worse = _result("tuned", 0.40, 0.04)  # -0.20: flagged
    table = km.compare_benchmarks(base, [same, worse])
    frame = table.to_pandas()
    assert list(frame.columns[:5]) == ["task", "metric", "base", "tuned", "Δ tuned"]
    row = frame.iloc[0]
    assert row["Δ tuned"] == pytest.approx(-0.05) and row["Δ tuned stderr"] == pytest.approx(0.05)
    assert not row["Δ tuned drop"] and row["Δ tuned' drop"] and row["Δ tuned'"] == pytest.approx(-0.20)
    assert table.drops() == [("tuned'", "quiz", "acc")]
    assert "drop" in table._repr_html_()
    figure = table.figure()
    assert [bar.name for bar in figure.data] == ["base", "tuned", "tuned'"]
    assert [bar.y[0] for bar in figure.data] == [0.60, 0.55, 0.40]
    with pytest.raises(SwiftUsageError, match="needs tasks"):
        km.compare_benchmarks("tiny", ["tiny"])


def test_cli_eval_tasks_prints_scores(tiny_model: Path, workspace: Path, capsys):
    code = cli.main(["eval", "tiny", "--tasks", "km_general_en", "--limit", "4", "--num-fewshot", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "km_general_en" in out and "acc" in out and "n=4" in out
    saved = json.loads(next((workspace / "benchmarks").glob("*.json")).read_text(encoding="utf-8"))
    assert saved["num_fewshot"] == 1 and saved["limit"] == 4


@pytest.fixture(scope="module")
def server(tiny_model: Path):
    srv = km.serve("tiny", backend="transformers", name="bench", stream_interval_ms=0)
    yield srv
    srv.stop()


def test_echo_gives_prompt_logprobs_of_token_prompts(server, tiny_model: Path):
    import httpx
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = [5, 17, 301, 42, 7]
    body = {"model": "tiny", "prompt": [ids], "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
    reply = httpx.post(server.url + "/completions", json=body, timeout=60).json()["choices"][0]["logprobs"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    expected = [float(logp[t - 1, ids[t]]) for t in range(1, len(ids))]
    assert reply["token_logprobs"][0] is None and reply["top_logprobs"][0] is None
    assert len(reply["token_logprobs"]) == len(ids) + 1  # the prompt, then the one generated token
    assert reply["token_logprobs"][1 : len(ids)] == pytest.approx(expected, abs=1e-4)
    assert max(reply["top_logprobs"][-1].values()) == pytest.approx(reply["token_logprobs"][-1])  # greedy
    eos = AutoTokenizer.from_pretrained(tiny_model).eos_token_id  # an end token ends the reply and is reported
    ended = httpx.post(server.url + "/completions", json={**body, "logit_bias": {str(eos): 100}}, timeout=60).json()
    assert ended["choices"][0]["finish_reason"] == "stop"
    assert len(ended["choices"][0]["logprobs"]["token_logprobs"]) == len(ids) + 1
    for bad, message in (({"stream": True}, "echo cannot be combined with stream"), ({"prompt": [10**9]}, "token ids")):
        error = httpx.post(server.url + "/completions", json={**body, **bad}, timeout=60)
        assert error.status_code == 400 and message in error.json()["error"]["message"]


def test_served_scores_equal_in_process_scores(server, workspace: Path):
    served = km.evaluate(server.base_url, tasks=["km_general_en", "km_ceval_zh"], limit=16, served_model="tiny")
    local = km.evaluate("tiny", tasks=["km_general_en", "km_ceval_zh"], limit=16)
    assert [(s.task, s.metric, s.samples) for s in served.scores] == [
        (s.task, s.metric, s.samples) for s in local.scores
    ]
    assert [s.value for s in served.scores] == pytest.approx([s.value for s in local.scores], abs=1e-9)
    with pytest.raises(SwiftUsageError, match="does not serve 'nope'; it serves tiny"):
        km.evaluate(server.url, tasks=["km_general_en"], served_model="nope")
