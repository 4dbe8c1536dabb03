"""km.search / km.catalog / %swift search on a small catalog: filters, bad input, the disk-cached index,
local model cards from a hub-cache layout, the CLI, the magic and the panel's kernel side."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from search_queries import MINI, write_mini_catalog  # noqa: E402  (tests/ is on sys.path)

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.config import settings
from kernel_magics.errors import SwiftConfigError, SwiftDataError, SwiftModelError, SwiftUsageError
from kernel_magics.search import dense, index, ranking, sources
from kernel_magics.search.local import card_from_folder, safetensors_params


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> str:
    return str(write_mini_catalog(tmp_path_factory.mktemp("catalog") / "mini.jsonl"))


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch, km_cache):
    """Nothing from this machine's Hugging Face cache or converted packaged models leaks into the results."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("kernel_magics.packaged.built_folders", lambda: [])  # nor a real model another test converted
    return cache


def _fake_hub_cache(root: Path, repo_id: str, source: Path) -> Path:
    repo = root / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(source, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    return repo / "snapshots" / sha


def test_results_frame_filters_and_why(mini):
    frame = km.search("chinese vision chat model", k=3, catalog=mini)
    assert list(frame.columns) == list(ranking.RESULT_COLUMNS)
    strict = frame[frame["relaxed"] == ""]
    assert len(strict) == 2  # only two cards take images and speak Chinese
    assert set(strict["id"]) == {"Qwen/Qwen2-VL-2B-Instruct", "openbmb/MiniCPM-V-2_6"}
    assert all("image input" in why and "zh" in why for why in strict["why"])
    assert list(strict["score"]) == sorted(strict["score"], reverse=True)
    assert "vision → image input" in frame.attrs["understood"]
    # the third row is the nearest card outside the filter that removed the most (zh: llava speaks English)
    assert list(frame["relaxed"]) == ["", "", "zh"] and frame["id"].iloc[2] == "llava-hf/llava-1.5-7b-hf"
    assert "only 2 models pass every condition; 'zh' removed the most" in frame.attrs["note"]


def test_explicit_filters(mini):
    frame = km.search("chat model", max_params_b=8, license="apache-2.0", formats="gguf", catalog=mini)
    assert len(frame) >= 3
    for row in frame.itertuples():
        assert row.params_b <= 8 and row.license == "apache-2.0" and "gguf" in row.formats
    frame = km.search("model", min_context="100k", languages="English", catalog=mini)
    assert set(frame["id"]) == {
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct",
        "microsoft/Phi-3-mini-128k-instruct",
    }
    commercial = km.search("chat", license="commercial", family="llama", catalog=mini)
    assert set(commercial["license"]) == {"llama3.1"}


def test_named_family_and_size(mini):
    frame = km.search("llama 3.1 8B", catalog=mini)
    assert list(frame[frame["relaxed"] == ""]["id"]) == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert any("family llama31" in u for u in frame.attrs["understood"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"query": "chat", "license": "apache"}, SwiftUsageError, "did you mean 'apache-2.0'"),
        ({"query": "chat", "modalities": "vison"}, SwiftUsageError, "unknown value 'vison'"),
        ({"query": "chat", "formats": "onnx"}, SwiftUsageError, "--formats: unknown value 'onnx'"),
        ({"query": "chat", "languages": "klingon"}, SwiftUsageError, "unknown language 'klingon'"),
        ({"query": "chat", "family": "qewn"}, SwiftUsageError, "did you mean 'qwen"),
        ({"query": "chat", "k": 0}, SwiftConfigError, "-k must be at least 1"),
        ({"query": "x" * 10_000}, SwiftUsageError, "10,000 characters long"),
        ({"query": "70B model for phones"}, SwiftConfigError, "contradictory size filters"),
        ({"query": "chat", "min_params_b": 10, "max_params_b": 1}, SwiftConfigError, "contradictory size filters"),
        ({"query": "chat", "max_params_b": "big"}, SwiftConfigError, "--max-params-b"),
        ({"query": "chat", "mode": "fast"}, SwiftUsageError, "--mode"),
        ({"query": "chat", "embedder": "acme/not-cached"}, SwiftModelError, "cannot load the search embedder"),
    ],
)
def test_bad_input_is_one_line(mini, kwargs, error, message):
    with pytest.raises(error) as err:
        km.search(catalog=mini, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_empty_query_only_filters_and_nonsense(mini):
    newest = km.search(catalog=mini, k=3)
    assert list(newest["release"]) == sorted(newest["release"], reverse=True) and len(newest) == 3
    assert "newest" in newest.attrs["note"]
    audio = km.search(modalities="audio", catalog=mini)
    assert list(audio["id"]) == ["openai/whisper-small"]
    nothing = km.search("xqzv blorf", catalog=mini)
    assert len(nothing) == 0 and "nothing in the catalog matches" in nothing.attrs["note"]
    impossible = km.search(tasks="asr", license="llama3.1", catalog=mini)  # arguments are never relaxed
    assert len(impossible) == 0 and "no model in the catalog passes asr, license llama3.1" in impossible.attrs["note"]
    relaxed = km.search("speech recognition", license="llama3.1", catalog=mini)  # the query's words may be
    assert len(relaxed) == 2 and set(relaxed["relaxed"]) == {"asr"} and set(relaxed["license"]) == {"llama3.1"}
    assert relaxed.attrs["note"].startswith("no model passes every condition; 'asr' removed the most")


def test_relaxes_understood_conditions_when_nothing_passes(mini):
    frame = km.search("embedding model for phones with a GGUF build", catalog=mini, k=3)
    assert len(frame) > 0 and "relaxed" in frame.attrs["note"]


def test_chinese_query(mini):
    frame = km.search("能看图说话、支持中文对话的视觉问答模型", catalog=mini, k=5)
    assert set(frame[frame["relaxed"] == ""]["id"]) == {"Qwen/Qwen2-VL-2B-Instruct", "openbmb/MiniCPM-V-2_6"}
    phone = km.search("适合手机部署的小模型", catalog=mini, k=3)
    assert all(0 < p <= 4 for p in phone["params_b"])


def test_index_is_cached_on_disk_and_queries_do_not_embed_cards(mini, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "cache"))
    index.clear_memory()
    calls: list[int] = []
    original = dense.Embedder.encode_documents

    def counting(self, texts):
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(dense.Embedder, "encode_documents", counting)
    km.search("code model", catalog=mini)
    assert calls == [len(MINI)]
    files = list((tmp_path / "cache" / "search").glob("index-*-all-MiniLM-L6-v2.npz"))
    assert len(files) == 1
    for query in ("chat", "看图", "reranker"):
        km.search(query, catalog=mini)
    assert calls == [len(MINI)]  # queries embed only the query
    index.clear_memory()  # a new process: the index comes back from disk
    km.search("code model", catalog=mini)
    assert calls == [len(MINI)]
    built = index.build_index(sources.all_cards(mini, False)[0])
    assert built.loaded_from_disk and built.embeddings.shape == (len(MINI), 384)


def test_bm25_and_dense_modes(mini):
    bm25 = km.search("reranker", mode="bm25", catalog=mini)
    assert bm25["id"].iloc[0] == "BAAI/bge-reranker-base"
    assert "similarity" not in bm25["why"].iloc[0]
    dense_only = km.search("speech recognition transcription", mode="dense", catalog=mini, k=1)
    assert dense_only["id"].iloc[0] == "openai/whisper-small"


def test_without_sentence_transformers_falls_back_and_says_so_once(mini, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setattr(dense, "_loaded", {})
    monkeypatch.setattr(dense, "_warned", False)
    index.clear_memory()
    first = km.search("chinese vision model", catalog=mini)
    second = km.search("code model", catalog=mini)
    assert first.attrs["embedder"] is None and sum(first["relaxed"] == "") == 2 and len(second) > 0
    assert capsys.readouterr().err.count("sentence-transformers is not installed") == 1
    index.clear_memory()


def test_local_cards_from_hub_cache_and_folders(mini, tiny_model, empty_hub_cache, tmp_path):
    from safetensors import safe_open

    with safe_open(str(tiny_model / "model.safetensors"), "np") as f:
        numel = sum(f.get_tensor(name).size for name in f.keys())
    assert safetensors_params(tiny_model) == numel
    _fake_hub_cache(empty_hub_cache, "acme/tiny-chat", tiny_model)
    snapshot = _fake_hub_cache(empty_hub_cache, "Qwen/Qwen2.5-0.5B-Instruct", tiny_model)
    folder = tmp_path / "models" / "my-tiny"
    shutil.copytree(tiny_model, folder)
    config = json.loads((tiny_model / "config.json").read_text())

    frame = km.search("acme tiny chat", catalog=mini, local_dirs=[str(tmp_path / "models")])
    top = frame.iloc[0]
    assert top["id"] == "acme/tiny-chat" and top["local"]
    assert top["params_b"] == pytest.approx(numel / 1e9, rel=1e-6)
    assert top["context_length"] == config["max_position_embeddings"]
    assert top["architecture"] == config["architectures"][0] and "chat" in top["tasks"]
    everything = km.catalog(catalog=mini, local_dirs=[str(tmp_path / "models")])
    by_id = everything.set_index("id")
    assert by_id.loc["my-tiny", "local"] and by_id.loc["my-tiny", "path"] == str(folder)
    known = by_id.loc["Qwen/Qwen2.5-0.5B-Instruct"]  # a catalog model found locally keeps the catalog's facts
    assert known["local"] and known["path"] == str(snapshot) and known["params_b"] == 0.494
    assert len(everything) == len(MINI) + 2
    assert card_from_folder(tmp_path) is None  # no config.json


def test_bad_catalog_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(MINI[0]) + "\n{not json\n")
    with pytest.raises(SwiftDataError, match=r"bad.jsonl:2: not valid JSON"):
        km.search("chat", catalog=str(bad))
    with pytest.raises(SwiftDataError, match="not found"):
        km.catalog(catalog=str(tmp_path / "missing.jsonl"))


def test_cli(mini, capsys):
    rc = cli.main(["search", "适合手机部署的小模型", "-k", "2", "--catalog", mini, "--no-include-local"])
    out = capsys.readouterr().out
    assert rc == 0 and "understood: 手机 → phone" in out
    assert out.count("\n 1. ") == 1 and " 2. " in out and " 3. " not in out
    rc = cli.main(["search", "chat", "--license", "apache", "--catalog", mini])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "did you mean 'apache-2.0'" in err


@pytest.fixture()
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kernel_magics")
    yield ip
    ip.run_line_magic("unload_ext", "kernel_magics")


def test_magic_shows_prefilled_panel_and_use_sets_default(shell, mini, monkeypatch):
    from kernel_magics.widgets.search_panel import SearchPanel

    panel = shell.run_line_magic("swift", f"search 看图 中文 -k 5 --max-params-b 3 --catalog {mini}")
    assert isinstance(panel, SearchPanel)
    assert panel.query == "看图 中文" and panel.filters["max_params_b"] == 3.0
    assert [r["id"] for r in panel.results if not r["relaxed"]] == ["Qwen/Qwen2-VL-2B-Instruct"]
    assert all(r["params_b"] <= 3 for r in panel.results)  # an explicit bound is never relaxed
    # no other image card is under 3B, so the image filter is the one relaxed (zh cards under 3B)
    assert {r["relaxed"] for r in panel.results} == {"", "image input"} and "removed the most" in panel.note
    assert callable(km.search) and len(km.search("code", catalog=mini, k=1)) == 1  # the package forwards calls
    old = settings.default_model
    try:
        panel.use("Qwen/Qwen2-VL-2B-Instruct")
        magics = shell.magics_manager.registry["SwiftMagics"]
        assert settings.default_model == magics.default_model == panel.default_model == "Qwen/Qwen2-VL-2B-Instruct"
    finally:
        shell.run_line_magic("config", f"SwiftMagics.default_model = {old!r}")


def test_cell_magic_yaml_body(shell, mini):
    panel = shell.run_cell_magic("swift", "search -k 2", f"query: reranker for RAG\ncatalog: {mini}\nk: 5")
    assert panel.k == 2  # the line wins over the body
    assert [r["id"] for r in panel.results if not r["relaxed"]] == ["BAAI/bge-reranker-base"]


def test_embedder_choice(empty_hub_cache, monkeypatch):
    monkeypatch.delenv("KERNEL_MAGICS_EMBEDDER", raising=False)
    assert dense.embedder_name() == dense.BUNDLED
    repo = empty_hub_cache / "models--sentence-transformers--paraphrase-multilingual-MiniLM-L12-v2"
    sha = "0" * 40
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "snapshots" / sha / "modules.json").write_text("[]")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    assert dense.embedder_name() == "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
    monkeypatch.setenv("KERNEL_MAGICS_EMBEDDER", "none")
    assert dense.embedder_name() is None
    assert dense.embedder_name("/models/my-embedder") == "/models/my-embedder"


def test_commands_module_is_light():
    code = (
        "import sys, kernel_magics.search.commands\n"
        "heavy = ('torch', 'pandas', 'numpy', 'jieba', 'bm25s', 'sentence_transformers', 'transformers')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_panel_messages_search_errors_and_download(mini, tiny_model, empty_hub_cache, monkeypatch):
    from kernel_magics.widgets.search_panel import SearchPanel

    monkeypatch.setenv("KERNEL_MAGICS_CATALOG", mini)
    panel = SearchPanel()
    assert "commercial" in panel.options["licenses"] and "gguf" in panel.options["formats"]
    panel._on_message(panel, {"type": "search", "query": "code", "filters": {"max_params_b": 2}, "k": 5}, None)
    strict = [r["id"] for r in panel.results if not r["relaxed"]]
    assert panel.searches == 1 and strict == ["Qwen/Qwen2.5-Coder-1.5B-Instruct"]
    panel._on_message(panel, {"type": "search", "query": "code", "filters": {"license": "apache"}}, None)
    assert panel.results == [] and "did you mean 'apache-2.0'" in panel.error
    _fake_hub_cache(empty_hub_cache, "acme/tiny-chat", tiny_model)
    panel.download("acme/tiny-chat", wait=True)
    assert panel.downloads["acme/tiny-chat"].startswith("done: ") and "snapshots" in panel.status
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    panel.download("acme/not-here", wait=True)
    assert panel.downloads["acme/not-here"].startswith("failed: ") and "HF_HUB_OFFLINE=1" in panel.status
