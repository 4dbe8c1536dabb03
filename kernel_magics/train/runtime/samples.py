"""``samples.jsonl``: what a method's sampling callback publishes while a run trains (a vision run's answers
on a few images, GRPO's scored completions), one ``{"step": ..., "samples": [...]}`` object per line.

:func:`publish_samples` is its one writer (the run's own process, or the kernel with ``where="kernel"``) and
:func:`read_samples` its one reader (the dashboard's samples tabs, which then follow the run's events).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"


def publish_samples(run: Any, event: str, payload: dict[str, Any]) -> None:
    """Keep ``payload`` as ``run.samples``, append it to the run's ``samples.jsonl`` and publish it as ``event``."""
    run.samples = payload
    with open(Path(run.output_dir) / SAMPLES_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(payload, ensure_ascii=False) + "\n")
    run.emit(event, payload)


def read_samples(folder: Path) -> list[dict[str, Any]]:
    """Every entry the run in ``folder`` published, oldest first ([] before the first); a line that does not
    parse (the one being written) is left out."""
    path = Path(folder) / SAMPLES_FILE
    entries: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return entries
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
