"""Reproducible scripts: ``run.to_script(path)`` and ``%swift export-script RUN``.

The script reproduces a training run outside Jupyter with the project's CLI (shell) or Python API
(python): it checks the environment and installs what is missing, fetches the model (resumable; a no-op
when cached), uses a copy of the data kept next to the script (checked by sha256), trains with the exact
recorded arguments, merges the adapter and, when asked, serves the result. Every step is skipped when its
output is already there, so running the script twice does the work once.

Every recorded value reaches the script quoted: shell words through :func:`shlex.quote`, Python values
through ``repr``, and text in comments and the docstring with its control characters and quotes escaped,
so a run id or a path can never run code of its own. The run id is checked where it is read (a plain file
name), so nothing is written outside the folder the script goes to.
"""

from __future__ import annotations

import hashlib
import os
import pprint
import shlex
import shutil
import stat
import string
from pathlib import Path
from typing import Any

from ..argspec import Arg, Command
from ..errors import SwiftUsageError, did_you_mean
from .methods.registry import command_of, method_of
from .runtime.folders import checked_run_id

SCRIPT_KINDS = ("shell", "python")
# arguments the script sets itself
_OWN = ("model", "dataset", "output_dir")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def command_flags(command: Command, values: dict[str, Any]) -> list[str]:
    """CLI tokens that make ``command`` receive ``values`` (defaults left out)."""
    tokens: list[str] = []
    for arg in command.args:
        if arg.name in _OWN or arg.positional or arg.name not in values:
            continue
        value = values[arg.name]
        if value is None or (value == arg.default and not arg.flag):
            continue
        tokens += _flag_tokens(arg, value)
    return tokens


def _flag_tokens(arg: Arg, value: Any) -> list[str]:
    name = arg.flag_name
    if arg.flag:
        return [name if value else "--no-" + name[2:]]
    if arg.multiple:
        return [
            t
            for item in value
            for t in (name, f"{item[0]}={item[1]}" if isinstance(item, (list, tuple)) else str(item))
        ]
    if isinstance(value, (list, tuple)):
        return [name, ",".join(map(str, value))]
    return [name, repr(value) if isinstance(value, float) else str(value)]


def _install_spec() -> list[str]:
    """pip arguments installing kernel_magics with its training extra: this checkout, or the release."""
    import kernel_magics

    root = Path(kernel_magics.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return ["-e", f"{root}[train]"]
    return [f"kernel_magics[train]=={kernel_magics.__version__}"]


def _plan(run: Any, folder: Path, stem: str, run_id: str) -> dict[str, Any]:
    """Everything the templates need, with the data copied next to the script."""
    config = run.config
    command = command_of(method_of(config).name)
    arguments = dict(config.arguments)
    source = config.dataset_copy or arguments.get("dataset")
    data_ref, data_sha = str(source), None
    if source and Path(str(source)).is_file():
        data_dir = folder / f"{stem}-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        target = data_dir / Path(str(source)).name
        if Path(str(source)).resolve() != target.resolve():
            shutil.copy2(source, target)
        data_ref, data_sha = f"{stem}-data/{target.name}", _sha256(target)
    if config.reward_file:
        arguments["reward"] = _copy_rewards(run, arguments.get("reward") or [], folder / f"{stem}-data")
    model = config.model
    if Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    versions = config.versions
    pins = [f"torch=={versions['torch'].split('+')[0]}"] if versions.get("torch") else ["torch"]
    libs = [
        f"{name}=={versions[name]}"
        for name in ("transformers", "trl", "peft", "datasets", "accelerate")
        if versions.get(name)
    ]
    return {
        "run_id": run_id,
        "command": command.name,
        "model": model,
        "hub_model": "/" in model and not Path(model).exists(),
        "data": data_ref,
        "data_local": data_sha is not None,
        "data_sha": data_sha,
        "flags": command_flags(command, arguments),
        "kwargs": {k: v for k, v in arguments.items() if k not in _OWN and k in {a.name for a in command.args}},
        "torch": pins,
        "libs": libs,
        "install": _install_spec(),
        "final_loss": _final_loss(run),
    }


def _copy_rewards(run: Any, specs: list[str], data_dir: Path) -> list[str]:
    """GRPO runs: the reward functions saved with the run go next to the data; specs point at the copy."""
    saved = Path(run.output_dir) / str(run.config.reward_file)
    prefix = f"{run.config.reward_file}:"
    if not saved.is_file() or not any(str(s).startswith(prefix) for s in specs):
        return specs
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / saved.name
    shutil.copy2(saved, target)
    return [f"{target.resolve()}:{s[len(prefix) :]}" if str(s).startswith(prefix) else s for s in specs]


def _final_loss(run: Any) -> float | None:
    rows = [r for r in getattr(run, "rows", []) if r.get("loss") is not None]
    return rows[-1]["loss"] if rows else None


def _escaped(text: Any) -> str:
    """``text`` on one line with backslashes, control characters and quotes escaped (comments, docstrings)."""
    return str(text).encode("unicode_escape").decode("ascii").replace('"', '\\"').replace("'", "\\'")


def _shell(p: dict[str, Any]) -> str:
    lines = [*_shell_environment(p), *_shell_model_and_data(p), *_shell_train_merge_serve(p)]
    if p["final_loss"] is not None:
        lines.append(f"echo 'done: $OUT (the original run ended at loss {p['final_loss']:.6f})'")
    return "\n".join(lines) + "\n"


def _shell_environment(p: dict[str, Any]) -> list[str]:
    """The script's header, its output folder and step 1: a Python with the pinned training stack."""
    q = shlex.quote
    return [
        "#!/usr/bin/env bash",
        f"# Reproduces kernel_magics run {_escaped(p['run_id'])} outside Jupyter (written by run.to_script).",
        "# Idempotent: each step is skipped when its output exists. Usage:",
        "#   bash THIS_SCRIPT            # creates ./.venv-kernel-magics when needed",
        "#   KM_PYTHON=/path/python bash THIS_SCRIPT   # use an existing environment",
        "#   SERVE=1 bash THIS_SCRIPT    # also serve the merged model at the end",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        f'DEFAULT_OUT="$HERE"/{q(p["run_id"] + "-repro")}',
        'OUT="${OUT:-$DEFAULT_OUT}"',
        "",
        "# 1. environment",
        'if [ -n "${KM_PYTHON:-}" ]; then',
        '  PY="$KM_PYTHON"',
        "else",
        '  VENV="${VENV:-$HERE/.venv-kernel-magics}"',
        '  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"',
        '  PY="$VENV/bin/python"',
        "fi",
        'if ! "$PY" -c "import kernel_magics, torch, transformers, trl, peft" 2>/dev/null; then',
        '  echo "installing kernel_magics and its training stack into $PY"',
        f'  "$PY" -m pip install {" ".join(q(t) for t in p["torch"])}  # install torch first: pinned, not a newer CUDA build',
        f'  "$PY" -m pip install {" ".join(q(t) for t in p["install"] + p["libs"])}',
        "fi",
        "",
    ]


def _shell_model_and_data(p: dict[str, Any]) -> list[str]:
    """Steps 2 and 3: download the model when it comes from the hub; check the copied data's checksum."""
    q = shlex.quote
    lines = ["# 2. model (resumable download; nothing to do when cached or built locally)"]
    if p["hub_model"]:
        lines.append(f'"$PY" -m kernel_magics download {q(p["model"])}')
    else:
        lines.append(f"echo model: {q(p['model'])} '(local, nothing to download)'")
    lines += ["", "# 3. data"]
    data = f'"$HERE"/{q(p["data"])}' if p["data_local"] else q(p["data"])
    lines.append(f"DATA={data}")
    if p["data_local"]:
        lines.append(
            f'[ "$(sha256sum < "$DATA" | cut -d " " -f 1)" = {q(p["data_sha"])} ] '
            '|| { echo "the data file $DATA has changed" >&2; exit 1; }'
        )
    return lines


def _shell_train_merge_serve(p: dict[str, Any]) -> list[str]:
    """Steps 4 to 6: train with the recorded flags, merge the adapter, serve when asked."""
    q = shlex.quote
    flags = " ".join(q(t) for t in p["flags"])
    return [
        "",
        "# 4. train with the recorded arguments",
        'if [ -f "$OUT/adapter/adapter_config.json" ] || [ -f "$OUT/adapter/config.json" ]; then',
        '  echo "training already done: $OUT/adapter"',
        "else",
        f'  "$PY" -m kernel_magics {q(p["command"])} --model {q(p["model"])} --dataset "$DATA" --output-dir "$OUT" {flags}',
        "fi",
        "",
        "# 5. merge the adapter into the (unquantized) base",
        'if [ -f "$OUT/adapter/adapter_config.json" ] && [ ! -f "$OUT/merged/config.json" ]; then',
        f'  "$PY" -m kernel_magics merge "$OUT/adapter" --base {q(p["model"])} --out-dir "$OUT/merged"',
        "fi",
        "",
        "# 6. serve (optional)",
        'if [ "${SERVE:-0}" = 1 ]; then',
        '  MODEL_DIR="$OUT/merged"; [ -d "$MODEL_DIR" ] || MODEL_DIR="$OUT/adapter"',
        '  exec "$PY" -m kernel_magics serve --model "$MODEL_DIR"',
        "fi",
    ]


def _python(p: dict[str, Any]) -> str:
    download = "km.download(MODEL)" if p["hub_model"] else "print(f'model: {MODEL} (local, nothing to download)')"
    return PYTHON_SCRIPT.substitute(
        run_id=_escaped(p["run_id"]),
        default_out=repr(p["run_id"] + "-repro"),
        model=repr(p["model"]),
        arguments=pprint.pformat(p["kwargs"], sort_dicts=True),
        data=repr(p["data"]),
        data_sha=repr(p["data_sha"]),
        torch=repr(p["torch"]),
        install=repr(p["install"] + p["libs"]),
        model_step=download,
        command=p["command"],
    )


# the Python kind of script; $names are filled by _python
PYTHON_SCRIPT = string.Template('''#!/usr/bin/env python3
"""Reproduces kernel_magics run $run_id outside Jupyter (written by run.to_script).

Idempotent: each step is skipped when its output exists. Run it with a Python that has kernel_magics,
or let it install the training stack into the running interpreter:  python THIS_SCRIPT [--serve]
"""

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("OUT", HERE / $default_out))
MODEL = $model
ARGUMENTS = $arguments
DATA = $data
DATA_SHA256 = $data_sha

# 1. environment
missing = [m for m in ("kernel_magics", "torch", "transformers", "trl", "peft") if importlib.util.find_spec(m) is None]
if missing:
    print("installing", ", ".join(missing))
    subprocess.check_call([sys.executable, "-m", "pip", "install", *$torch])  # torch first, pinned
    subprocess.check_call([sys.executable, "-m", "pip", "install", *$install])

import kernel_magics as km  # noqa: E402

# 2. model (resumable download; nothing to do when cached or built locally)
$model_step

# 3. data
if DATA_SHA256 is not None:
    DATA = str(HERE / DATA)
    if hashlib.sha256(Path(DATA).read_bytes()).hexdigest() != DATA_SHA256:
        sys.exit(f"the data file {DATA} has changed")

# 4. train with the recorded arguments
adapter = OUT / "adapter"
if (adapter / "adapter_config.json").is_file() or (adapter / "config.json").is_file():
    print(f"training already done: {adapter}")
else:
    run = km.$command(model=MODEL, dataset=DATA, output_dir=str(OUT), **ARGUMENTS)
    if run.wait() != "finished":
        sys.exit(f"training ended {run.status}: {run.error}")
    print("final loss", run.metrics["loss"].dropna().iloc[-1])

# 5. merge the adapter into the (unquantized) base
if (adapter / "adapter_config.json").is_file() and not (OUT / "merged" / "config.json").is_file():
    km.merge(base=MODEL, adapter=str(adapter), out_dir=str(OUT / "merged"))

# 6. serve (optional)
if "--serve" in sys.argv:
    model_dir = OUT / "merged" if (OUT / "merged").is_dir() else adapter
    server = km.serve(str(model_dir))
    print("serving at", server.url, "(Ctrl-C stops)")
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
''')


def to_script(run: Any, path: str | os.PathLike[str] | None = None, kind: str = "shell") -> Path:
    """Write a standalone script that reproduces ``run`` (a :class:`~kernel_magics.train.runtime.run.Run`); returns
    its path.

    ``kind``: "shell" (bash, the project's CLI) or "python" (the Python API). ``path`` defaults to
    ``reproduce-<run-id>.sh`` / ``.py`` in the run folder. The training data is copied next to the script.
    """
    if kind not in SCRIPT_KINDS:
        raise SwiftUsageError(f"kind must be shell or python, got '{kind}'{did_you_mean(str(kind), SCRIPT_KINDS)}")
    if not (hasattr(run, "config") and hasattr(run, "output_dir")):
        raise SwiftUsageError(f"to_script takes a run (km.sft(...), km.runs()), got {type(run).__name__}")
    run_id = checked_run_id(run.name, Path(run.output_dir) / "config.json")
    suffix = ".sh" if kind == "shell" else ".py"
    target = Path(path).expanduser() if path else Path(run.output_dir) / f"reproduce-{run_id}{suffix}"
    if target.is_dir() or not target.suffix:  # a folder (existing, or a name without a suffix)
        target = target / f"reproduce-{run_id}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    plan = _plan(run, target.parent, target.stem, run_id)
    text = _shell(plan) if kind == "shell" else _python(plan)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)
    return target
