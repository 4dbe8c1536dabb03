"""Every teaching lab in notebooks/ executes top to bottom on the tiny model (headless, nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, km_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KERNEL_MAGICS_CACHE_DIR", str(km_cache))
    monkeypatch.setenv("KERNEL_MAGICS_WORKSPACE", str(tmp_path / "km-workspace"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit labs without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
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
