"""The front door: %load_ext, %swift, the shared parser, the CLI, settings and env()."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import pytest

import kernel_magics
from kernel_magics import cli
from kernel_magics.argspec import Arg, Command, csv_list, key_value, parse_args
from kernel_magics.errors import SwiftUsageError


def _python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_load_ext_is_light_and_env_renders_device_row():
    out = _python(
        """
        import sys, json
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "kernel_magics")
        heavy = [m for m in ("torch", "transformers", "vllm", "trl", "peft") if m in sys.modules]
        info = ip.run_line_magic("swift", "env")
        print(json.dumps({"heavy": heavy, "html": info._repr_html_(), "device": info["device"]}))
        """
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["device"] in ("cpu", "cuda", "mps")
    assert "<th style='text-align:left'>device</th>" in result["html"]


@pytest.fixture()
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kernel_magics")
    yield ip
    ip.run_line_magic("unload_ext", "kernel_magics")


def test_bad_subcommand_is_one_line_and_shell_survives(shell, capsys):
    result = shell.run_cell("%swift sfx --lr 1")
    assert not result.success
    err = capsys.readouterr()
    text = err.out + err.err
    assert "unknown subcommand 'sfx'" in text and "did you mean 'sft'" in text
    assert "Traceback" not in text
    assert shell.run_cell("1 + 1").result == 2


def test_bad_flag_names_closest(shell, capsys):
    result = shell.run_cell("%swift env --devcie cpu")
    assert not result.success
    text = "".join(capsys.readouterr())
    assert "unknown flag '--devcie'" in text and "did you mean '--device'" in text
    assert "Traceback" not in text


def test_help_lists_subcommands(shell, capsys):
    shell.run_cell("%swift --help")
    text = capsys.readouterr().out
    for name in ("env", "search", "sft", "dpo", "estimate", "serve", "chat", "stop", "merge", "export"):
        assert f"\n  {name}" in text


def test_verbose_errors_shows_the_exception(shell):
    shell.run_line_magic("config", "SwiftMagics.verbose_errors = True")
    try:
        with pytest.raises(SwiftUsageError):
            shell.run_line_magic("swift", "nope")
    finally:
        shell.run_line_magic("config", "SwiftMagics.verbose_errors = False")


def test_config_traits_write_through_and_validate(shell):
    from kernel_magics.config import settings

    old = settings.default_model
    shell.run_line_magic("config", "SwiftMagics.default_model = 'tiny-llama'")
    try:
        assert settings.default_model == "tiny-llama"
    finally:
        shell.run_line_magic("config", f"SwiftMagics.default_model = {old!r}")
    try:
        shell.run_cell("%config SwiftMagics.port = 70000")  # IPython logs the validation error
        assert settings.port != 70000
    finally:  # the shell is shared by later tests: drop the bad value from its config
        shell.config.SwiftMagics.pop("port", None)


def test_settings_from_environment():
    out = _python(
        "from kernel_magics.config import settings; print(settings.workspace, settings.port)",
        env={**__import__("os").environ, "KERNEL_MAGICS_WORKSPACE": "/tmp/ws", "KERNEL_MAGICS_PORT": "9123"},
    )
    assert out.stdout.split() == ["/tmp/ws", "9123"]


def test_env_keys():
    info = kernel_magics.env()
    assert isinstance(info, dict)
    for key in ("device", "device_name", "memory_total_gb", "memory_free_gb", "bf16", "versions"):
        assert key in info
    assert info["device"] in ("cpu", "cuda", "mps")
    assert info["memory_total_gb"] > 0
    assert info["versions"]["kernel_magics"] == kernel_magics.__version__
    assert set(info["versions"]) >= {"torch", "transformers", "peft", "trl", "bitsandbytes", "vllm"}
    assert "device" in info.to_text()


def test_cli_env_and_errors():
    ok = subprocess.run([sys.executable, "-m", "kernel_magics", "env"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "device" in ok.stdout and "torch" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "kernel_magics", "sfx"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "did you mean 'sft'" in bad.stderr


# --- the shared argument spec -------------------------------------------------------------------
DEMO = Command(
    "demo",
    "demo command",
    "builtins:dict",
    args=(
        Arg("query", positional=True, nargs="*"),
        Arg("lr", type=float, default=2e-4),
        Arg("k", type=int, short="-k", default=5),
        Arg("packing", flag=True),
        Arg("target_modules", type=csv_list),
        Arg("method", choices=("lora", "qlora", "full")),
        Arg("adapters", type=key_value, multiple=True, option="--adapter"),
    ),
)


def test_line_flags_win_over_yaml_body():
    call = parse_args(DEMO, ["--lr", "1e-3", "find", "me"], "lr: 5e-5\nk: 3\ntarget-modules: [q_proj, v_proj]\n")
    assert call.kwargs == {"lr": 1e-3, "k": 3, "target_modules": ["q_proj", "v_proj"], "query": "find me"}


def test_flag_forms():
    call = parse_args(DEMO, ["--no-packing", "-k", "7", "--adapter", "a=/x", "--adapter", "b=/y", "--method", "qlora"])
    assert call.kwargs == {"packing": False, "k": 7, "adapters": [("a", "/x"), ("b", "/y")], "method": "qlora"}
    assert call.run() == call.kwargs


@pytest.mark.parametrize(
    ("argv", "body", "message"),
    [
        (["--lrr", "1"], None, "did you mean '--lr'"),
        (["--k", "x"], None, "invalid"),
        (["--method", "qlor"], None, "did you mean 'qlora'"),
        ([], "lora_rr: 3", "unknown key 'lora_rr'"),
        ([], "lr: [1, 2", "not valid YAML"),
        ([], "- a\n- b", "must be YAML 'key: value' lines"),
        ([], "lr: abc", "--lr"),
    ],
)
def test_bad_input_is_a_usage_error(argv, body, message):
    with pytest.raises(SwiftUsageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_args(DEMO, argv, body)


def test_every_command_signature_matches_its_arguments():
    """Magic, CLI and Python API share names: every Arg is a keyword of the target function."""
    for name, command in cli.commands().items():
        params = inspect.signature(command.function()).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for arg in command.args:
            assert accepts_any or arg.name in params, f"{name}: --{arg.name} is not a keyword of {command.target}"
        for key in command.defaults:
            assert accepts_any or key in params, f"{name}: default {key} is not a keyword of {command.target}"


def test_the_optional_bitsandbytes_kernels_notice_is_filtered(caplog):
    """Importing kernel_magics hides bitsandbytes' 'install kernels' notice (4-bit works without it)."""
    import logging

    import kernel_magics  # noqa: F401 - installs the filter

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.")
        logger.warning("a real 4-bit problem")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a real 4-bit problem"]


def test_port_host_and_device_are_checked_once_for_magic_api_and_environment():
    import kernel_magics as km
    from kernel_magics.config import settings
    from kernel_magics.errors import SwiftConfigError

    for bad in (70000, 0, "http", True):
        with pytest.raises(SwiftConfigError, match="port must be a number between 1 and 65535") as info:
            km.serve("tiny", port=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(SwiftConfigError, match="host must be an address"):
        km.serve("tiny", host="127.0.0.1 8000")
    for name, bad in (("port", 65536), ("device", "gpu"), ("device", "cuda:x"), ("host", "")):
        with pytest.raises(SwiftConfigError, match=f"{name} must be"):
            settings.update(**{name: bad})
    old = settings.device
    try:
        settings.device = " CUDA:1 "
        assert settings.device == "cuda:1"
    finally:
        settings.device = old
    out = _python(
        "import warnings; warnings.simplefilter('always')\n"
        "from kernel_magics.config import settings; print(settings.port, settings.device)",
        env={**__import__("os").environ, "KERNEL_MAGICS_PORT": "70000", "KERNEL_MAGICS_DEVICE": "cpu"},
    )
    assert out.stdout.split() == ["8000", "cpu"]
    assert "KERNEL_MAGICS_PORT ignored: port must be a number between 1 and 65535, got 70000" in out.stderr
