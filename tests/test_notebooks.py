"""Every teaching lab in notebooks/ executes top to bottom (headless, nbclient) and its own asserts hold.

The labs that teach with SmolLM2-135M-Instruct (``MODEL = "smollm2"``) are in the ``real`` tier: the
model is converted once per session (``real_model``) into the cache the notebook kernels use.

The Chinese twins in notebooks/zh/ run only where their code differs from the English lab's, i.e. where a
line carries a Chinese example string (``# 示例``; lab 01's search queries). A twin whose code cells equal its
English lab's is covered by the English lab's run: tests/test_docs_in_step.py proves its code identical, cell
for cell, and its markdown does not execute. Which twins differ is read from the files, so a twin that gains
a ``# 示例`` line is executed from then on. A twin runs on the same model as its English lab, in the same way
(same cache, workspace, temporary folder and working directory).
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from real_support import real_model  # noqa: F401 - the real tier's session fixture

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CHINESE = sorted((NOTEBOOK_DIR / "zh").glob("*.ipynb"))
# every lab, and what it runs on; a new notebook must be added here
LABS = {
    "00_quickstart": "real",
    "01_find_a_model": "real",
    "02_sft_lora_qlora": "real",
    "03_preference_dpo_orpo": "real",
    "04_serve_and_chat": "real",
    "05_merge_export_eval": "real",
    "06_grpo": "tiny",
    "07_writing_assistant": "real",
    "08_classroom": "real",
}


def _code(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _differs(twin: Path) -> bool:
    """A Chinese twin whose code is not the English lab's (a ``# 示例`` line), so it needs its own run."""
    english = NOTEBOOK_DIR / twin.name
    return not english.exists() or _code(twin) != _code(english)


def _params() -> list:
    def marks(path: Path) -> list:
        return [pytest.mark.real] if LABS.get(path.stem) == "real" else []

    english = [pytest.param(p, id=p.stem, marks=marks(p)) for p in NOTEBOOKS]
    return english + [pytest.param(p, id=f"zh/{p.stem}", marks=marks(p)) for p in CHINESE if _differs(p)]


def test_every_lab_is_registered() -> None:
    assert {p.stem for p in NOTEBOOKS} == set(LABS)
    assert {p.stem for p in CHINESE} <= set(LABS), "a Chinese lab without an English one"  # twins share the entry
    for path in NOTEBOOKS + CHINESE:  # a twin runs on the same model as its English lab
        uses_real = 'MODEL = "smollm2"' in "\n".join(_code(path))
        assert uses_real == (LABS[path.stem] == "real"), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", _params())
def test_notebook_executes(
    path: Path, km_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if LABS.get(path.stem) == "real":
        request.getfixturevalue("real_model")  # converted once, into the cache the kernel is pointed at
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KERNEL_MAGICS_CACHE_DIR", str(km_cache))
    monkeypatch.setenv("KERNEL_MAGICS_WORKSPACE", str(tmp_path / "km-workspace"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit labs without outputs"
    started = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    print(f"{path.stem}: {time.perf_counter() - started:.0f} s")
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code" and "raises-exception" not in c.metadata.get("tags", [])
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    for cell in nb.cells:  # cells that demonstrate a mistake show one UsageError line, not a traceback
        if "raises-exception" in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
            assert text.startswith("UsageError: ") and text.strip().count("\n") == 0, cell.outputs


def test_there_is_a_quickstart() -> None:
    assert any(p.name == "00_quickstart.ipynb" for p in NOTEBOOKS)
