"""gpu_check's ``kernel_memory`` section: a kernel that trained holds no device memory and no CUDA context.

A fresh Python process stands in for the notebook kernel: it runs ``km.sft`` on the device (the run trains in
its own worker process), and while the run trains and after it ends, ``nvidia-smi`` lists which processes hold
device memory. The kernel's pid must never appear, and ``torch.cuda.is_initialized()`` must stay False in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Any

KERNEL = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    import kernel_magics as km
    from kernel_magics.config import settings
    settings.update(cache_dir=sys.argv[1], workspace=sys.argv[2])

    def holders():
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return {int(p): int(m) for p, m in (line.split(", ") for line in out.strip().splitlines() if ", " in line)}

    run = km.sft(sys.argv[3], sys.argv[4], max_steps=int(sys.argv[5]), logging_steps=1, device=sys.argv[6],
                 save_steps=10**6, verbose=False)
    during = None
    while not run.done:
        if run.rows and during is None:
            during = holders()
        time.sleep(0.5)
    state = run.wait()
    time.sleep(2.0)
    after = holders()
    torch = sys.modules.get("torch")
    print(json.dumps({
        "state": state, "error": run.error, "kernel_pid": os.getpid(), "worker_pid": run.worker_pid,
        "during": during, "after": after,
        "kernel_cuda_initialized": bool(torch is not None and torch.cuda.is_initialized()),
    }))
    """
)


def section_kernel_memory(check: Any) -> dict[str, Any]:
    folder, data = check.model("0.5b"), check.rows(check.seq)
    command = [sys.executable, "-c", KERNEL, str(check.work / "cache"), str(check.work / "ws-kernel"), str(folder),
               str(data), str(check.steps), check.device]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"the stand-in kernel failed: {done.stderr.strip()[-400:]}") from None
    kernel = report["kernel_pid"]
    during, after = report["during"], report["after"]
    report["nvidia_smi"] = shutil.which("nvidia-smi") is not None
    report["kernel_device_bytes_during"] = None if during is None else during.get(str(kernel), 0) * 2**20
    report["kernel_device_bytes_after"] = None if after is None else after.get(str(kernel), 0) * 2**20
    report["worker_held_memory_during"] = None if during is None else str(report["worker_pid"]) in during
    report["target"] = "kernel: 0 bytes of device memory and no CUDA context, during and after the run"
    return report
