"""Cluster scripts are data, never code: hostile run ids, addresses and paths reach them as text.

The fuzz tests write torchrun / accelerate / Slurm scripts for generated values, check ``bash -n``, then run
each script with stub launchers: the canary file that the injected shell would create is never made, and the
launcher receives the values exactly as recorded.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_magics.errors import SwiftConfigError, SwiftError
from kernel_magics.train.cluster_script import LAUNCHERS, _script, write_cluster_script
from kernel_magics.train.runtime.distributed import DistributedArguments, check_host
from kernel_magics.train.runtime.folders import checked_run_id
from kernel_magics.train.runtime.run_config import RunConfig

CANARY = "CANARY"
INJECTIONS = (
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"\ntouch {CANARY} #",
    f"\r\ntouch {CANARY}\n#",
    f"'; touch {CANARY}; '",
    f'"; touch {CANARY}; "',
    f"\\\ntouch {CANARY}",
    f"${{IFS}}touch${{IFS}}{CANARY}",
    f"}}; touch {CANARY}; #",
    f"\u2028touch {CANARY}",
)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
HOSTILE = st.builds(lambda a, inj, b: a + inj + b, TEXT, st.sampled_from(INJECTIONS), TEXT)
# a stub for python: records its arguments one per line (NUL-separated) and runs nothing
STUB_PY = '#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done > "$ARGS_OUT"\n'
STUB_SRUN = '#!/bin/sh\nexec "$@"\n'  # Slurm's srun, for one node: runs the command here
STUB_SCONTROL = '#!/bin/sh\necho "$MASTER_FROM_SLURM"\n'


def _stubs(folder: Path) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("py", STUB_PY), ("srun", STUB_SRUN), ("scontrol", STUB_SCONTROL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _run_script(script: Path, workdir: Path) -> list[str]:
    """``bash -n`` then the script itself with stub launchers; the arguments the launcher received."""
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script.read_text()
    bin_dir = _stubs(workdir)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "KM_PYTHON": str(bin_dir / "py"),
        "ARGS_OUT": str(workdir / "args"),
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NODELIST": "node0",
        "MASTER_FROM_SLURM": "node0",
    }
    done = subprocess.run(["bash", str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-1000:]
    return (workdir / "args").read_bytes().decode().split("\0")[:-1]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=HOSTILE, run_dir=HOSTILE, addr=HOSTILE, port=HOSTILE, launcher=st.sampled_from(LAUNCHERS))
def test_fuzzed_values_in_a_cluster_script_are_never_run(tmp_path_factory, run_id, run_dir, addr, port, launcher):
    """Quoting alone holds: even values the checks would refuse land in the script as text."""
    workdir = tmp_path_factory.mktemp("fuzz")
    script = workdir / "job.sh"
    args = {"master_addr": addr, "master_port": port, "num_processes": 2}
    script.write_text(_script(launcher, run_dir, args, run_id))
    received = _run_script(script, workdir)
    assert not (workdir / CANARY).exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["args", "bin", "job.sh"]
    assert f"{workdir}/{run_dir}" in received  # the run folder argument, exactly as recorded
    if launcher != "slurm":  # Slurm takes node 0 from scontrol
        flag = "--master-addr" if launcher == "torchrun" else "--main_process_ip"
        assert received[received.index(flag) + 1] == addr
    flag = "--master-port" if launcher != "accelerate" else "--main_process_port"
    assert received[received.index(flag) + 1] == port


def _fake_run(folder: Path, run_id: str, **arguments) -> SimpleNamespace:
    folder.mkdir(parents=True, exist_ok=True)
    config = RunConfig(run_id=run_id, model="tiny", arguments=arguments)
    return SimpleNamespace(name=run_id, output_dir=folder, config=config)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=st.one_of(HOSTILE, TEXT, st.sampled_from(["../../../../sandbox/trav", "..", "a/b", "a\\b", "x\ny"])))
def test_a_run_id_from_config_json_is_a_plain_name_or_one_line(tmp_path_factory, run_id):
    root = tmp_path_factory.mktemp("ids")
    home = root / "home" / "deep" / "run"
    run = _fake_run(home, run_id)
    plain = (
        run_id.strip() != ""
        and ".." not in run_id
        and "/" not in run_id
        and "\\" not in run_id
        and not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in run_id)
    )
    for launcher in LAUNCHERS:
        if not plain:
            with pytest.raises(SwiftConfigError) as info:
                write_cluster_script(run, launcher)
            assert "\n" not in str(info.value) and len(str(info.value)) <= 300
            continue
        script = write_cluster_script(run, launcher)
        assert script.parent == home and (home / f"{script.stem}-run" / "config.json").is_file()
        assert _run_script(script, home)[-1] == str(home / f"{script.stem}-run")
        assert not (home / CANARY).exists()
    outside = [p for p in root.rglob("*") if home not in (p, *p.parents) and p not in home.parents]
    assert outside == []


@settings(max_examples=60, deadline=None)
@given(
    addr=st.one_of(
        HOSTILE,
        TEXT,
        st.ip_addresses().map(str),
        st.just("fe80::1%$(touch x)"),
        st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True),
    )
)
def test_master_addr_is_a_host_name_or_an_ip_address(addr):
    import ipaddress
    import re

    label = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
    valid = bool(re.fullmatch(rf"{label}(\.{label})*\.?", addr)) and len(addr) <= 253
    try:
        ipaddress.ip_address(addr)
        valid = valid or set(addr) <= set("0123456789abcdefABCDEF:.%_-" + "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ")
    except ValueError:
        pass
    if addr == "":
        return  # no address: the "nnodes > 1 needs --master-addr" line
    if valid:
        assert check_host(addr) == addr
        DistributedArguments(nnodes=2, master_addr=addr).check_distributed()
    else:
        with pytest.raises(SwiftConfigError, match=r"^master_addr must be a host name or an IP address") as info:
            DistributedArguments(nnodes=2, master_addr=addr).check_distributed()
        assert "\n" not in str(info.value) and len(str(info.value)) <= 300


def test_km_sft_refuses_a_shell_master_addr_in_one_line(tiny_model, workspace, tmp_path):
    import kernel_magics as km
    from kernel_magics.testing import tiny_dataset

    os.chdir(tmp_path)
    with pytest.raises(SwiftError) as info:
        km.sft(str(tiny_model), str(tiny_dataset("sft")), nnodes=2, master_addr=f"$(touch {CANARY})x", verbose=False)
    assert str(info.value).startswith("master_addr must be a host name or an IP address")
    assert "\n" not in str(info.value) and not (tmp_path / CANARY).exists()
    assert not list(workspace.rglob("config.json"))


def test_a_hand_edited_master_addr_in_config_json_is_refused_by_export(tmp_path):
    run = _fake_run(tmp_path / "run", "r1", nnodes=2, master_addr="$(touch CANARY)")
    for launcher in LAUNCHERS:
        with pytest.raises(SwiftConfigError, match="^master_addr must be a host name or an IP address"):
            write_cluster_script(run, launcher)
    run.config.arguments = {"master_addr": "node-0.cluster", "master_port": "29500; touch CANARY"}
    with pytest.raises(SwiftConfigError, match=r"^master_port in the run's config.json must be in 1\.\.65535"):
        write_cluster_script(run, "torchrun")
    assert [p.name for p in (tmp_path / "run").iterdir()] == []


def test_checked_run_id_keeps_ordinary_ids():
    for ok in ("sft-20261123-101500-tiny", "r$(touch x) 'q' \"d\" #", "ünïcode-run", "a.b"):
        assert checked_run_id(ok) == ok
    assert os.sep == "/"


PLAIN_ID = TEXT.filter(lambda t: t.strip() and ".." not in t and "/" not in t and "\\" not in t).filter(
    lambda t: not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in t)
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=st.one_of(PLAIN_ID, HOSTILE.filter(lambda v: "\n" not in v and "\r" not in v and "\u2028" not in v)),
       model=HOSTILE, data=HOSTILE, flag=HOSTILE, version=HOSTILE)  # fmt: skip
def test_fuzzed_values_in_a_reproduce_script_are_never_run(tmp_path_factory, run_id, model, data, flag, version):
    """run.to_script's shell script: recorded values reach the commands as single words, and run nothing."""
    from kernel_magics.train.script import _shell

    workdir = tmp_path_factory.mktemp("repro")
    plan = {
        "run_id": run_id.replace("/", "-"), "command": "sft", "model": model, "hub_model": False, "data": data,
        "data_local": False, "data_sha": None, "flags": ["--lr", flag], "kwargs": {}, "torch": [f"torch=={version}"],
        "libs": [], "install": ["kernel_magics"], "final_loss": 1.5,
    }  # fmt: skip
    script = workdir / "job.sh"
    script.write_text(_shell(plan))
    received = _run_script(script, workdir)  # the stub python: the training command is the last call
    assert not (workdir / CANARY).exists()
    assert received[:3] == ["-m", "kernel_magics", "sft"]
    assert received[received.index("--model") + 1] == model and received[received.index("--dataset") + 1] == data
    assert received[received.index("--lr") + 1] == flag
