"""The merge / export / eval / compare subcommands in a notebook shell, and models named in every way
the API accepts (names, folders, adapter folders, runs, (base, adapter) pairs, LABEL=MODEL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import kernel_magics as km
from kernel_magics.errors import SwiftModelError
from kernel_magics.export.loading import model_specs
from kernel_magics.testing import tiny_dataset


@pytest.fixture(scope="module")
def run_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    path = tmp_path_factory.mktemp("ws") / "runs" / "sft-1" / "adapter"
    model.save_pretrained(path)
    return path


@pytest.fixture()
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kernel_magics")
    yield ip
    ip.run_line_magic("unload_ext", "kernel_magics")


def test_magics_merge_export_eval_compare(shell, tiny_model: Path, run_adapter: Path, tmp_path: Path, workspace):
    merged = shell.run_line_magic("swift", f"merge {run_adapter}")
    assert merged == run_adapter.parent / "merged" and (merged / "model.safetensors").is_file()

    result = shell.run_cell_magic("swift", f"export {merged}", "format: gguf\nouttype: q8_0\n")
    assert result.path == workspace / "exports" / "sft-1-merged-gguf" / "sft-1-q8_0.gguf"
    assert result.path.is_file()
    assert "llama-server -m" in result._repr_html_()

    frame = shell.run_line_magic("swift", f"eval tiny -d {tiny_dataset('dpo')} --metrics perplexity --limit 3")
    assert list(frame.metric) == ["perplexity"] and frame.value.iloc[0] > 1

    panel = shell.run_line_magic(
        "swift", f"compare --models base={tiny_model},sft={run_adapter} --prompt Hello --prompt 你好 --max-new-tokens 4"
    )
    assert type(panel).__name__ == "HTML" and "sft" in panel.value and "你好" in panel.value


def test_magic_errors_are_one_red_line(shell, tiny_model: Path, capsys):
    for line, expected in [
        (f"export {tiny_model} --format gptq", "needs a CUDA GPU"),
        (f"eval {tiny_model} -d {tiny_dataset('sft')} --metrics perplexty", "did you mean 'perplexity'"),
        ("merge /nonexistent/adapter", "does not exist"),
    ]:
        if "gptq" in line and torch.cuda.is_available():
            continue
        result = shell.run_cell(f"%swift {line}")
        assert not result.success
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert expected in text and "Traceback" not in text, text


def test_km_export_stays_callable_after_the_package_is_imported(tiny_model: Path, tmp_path: Path):
    import inspect
    import sys

    import kernel_magics.export.commands  # noqa: F401 - the CLI imports the package like this
    import kernel_magics.export.gguf  # noqa: F401

    package = sys.modules["kernel_magics.export"]  # what `km.export` is once Python imported the package
    result = package(tiny_model, out_dir=tmp_path)
    assert result.path.name == "tiny-qwen2-f16.gguf"
    assert "outtype" in inspect.signature(package).parameters
    assert km.export(tiny_model, out_dir=tmp_path, outtype="f32").path.name == "tiny-qwen2-f32.gguf"


def test_model_specs_in_every_form(tiny_model: Path, run_adapter: Path, km_cache: Path):
    class Run:
        adapter_dir = run_adapter
        run_id = "sft-1"

    specs = model_specs(["tiny", str(run_adapter), (str(tiny_model), run_adapter), Run(), f"mine={tiny_model}"])
    assert [s.label for s in specs] == ["tiny", "sft-1", "sft-1-2", "sft-1-3", "mine"]
    assert specs[0].base == tiny_model and specs[0].adapter is None
    assert all(s.adapter == run_adapter and s.base == tiny_model for s in specs[1:4])
    assert specs[4].base == tiny_model
    assert model_specs({"b": "tiny"})[0].label == "b"

    broken = run_adapter.parent.parent / "orphan" / "adapter"
    broken.mkdir(parents=True)
    config = json.loads((run_adapter / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/gone/model"}))
    with pytest.raises(SwiftModelError, match="was trained on '/gone/model', which is not on this machine"):
        model_specs([str(broken)])


def test_adapter_changes_evaluation_and_matches_its_merge(tiny_model: Path, run_adapter: Path, tmp_path: Path):
    merged = km.merge(tiny_model, run_adapter, tmp_path / "merged")
    data = tiny_dataset("sft")
    frame = km.evaluate({"base": "tiny", "lora": run_adapter, "merged": merged}, data, limit=8)
    ppl = dict(zip(frame.model, frame.value, strict=True))
    assert ppl["lora"] == pytest.approx(ppl["merged"], rel=1e-5)
    assert abs(ppl["lora"] - ppl["base"]) > 1e-3 * ppl["base"]
    single = km.evaluate("tiny", data, adapter=run_adapter, limit=8)
    assert single.value.iloc[0] == pytest.approx(ppl["lora"], rel=1e-6)
