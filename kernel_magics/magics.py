"""The notebook front door: ``%swift`` / ``%%swift`` and the ``SwiftMagics`` configuration.

This module only parses (with the same parser as the CLI), calls the Python API and shows the result;
the work lives in the capability packages. A :class:`~kernel_magics.errors.SwiftError` becomes IPython's
``UsageError``, which the notebook shows as one red line without a traceback.
"""

from __future__ import annotations

import inspect
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Int, TraitError, Unicode, default, observe, validate

from . import cli
from .argspec import load
from .config import CHECKS, settings
from .errors import SwiftConfigError, SwiftError
from .progress_bars import quiet_progress_bars

_H = settings.HELP


@magics_class
class SwiftMagics(Magics):
    """``%swift SUBCOMMAND [flags]`` runs one subcommand; ``%%swift`` adds a YAML body of the same keys."""

    cache_dir = Unicode(settings.cache_dir, help=_H["cache_dir"]).tag(config=True)
    workspace = Unicode(settings.workspace, help=_H["workspace"]).tag(config=True)
    default_model = Unicode(settings.default_model, help=_H["default_model"]).tag(config=True)
    device = Unicode(settings.device, help=_H["device"]).tag(config=True)
    host = Unicode(settings.host, help=_H["host"]).tag(config=True)
    port = Int(settings.port, help=_H["port"]).tag(config=True)
    api_key = Unicode(settings.api_key, help=_H["api_key"]).tag(config=True)
    verbose_errors = Bool(settings.verbose_errors, help=_H["verbose_errors"]).tag(config=True)
    trust_remote_code = Bool(settings.trust_remote_code, help=_H["trust_remote_code"]).tag(config=True)
    device_lease = Unicode(settings.device_lease, help=_H["device_lease"]).tag(config=True)
    stall_seconds = Int(settings.stall_seconds, help=_H["stall_seconds"]).tag(config=True)
    language = Unicode(help="language of the launcher's labels and help (%swift alone): en or zh").tag(config=True)

    @default("language")
    def _default_language(self) -> str:
        from .widgets.launcher_i18n import default_language

        return default_language()

    @validate("language")
    def _check_language(self, proposal: Any) -> str:
        from .widgets.launcher_i18n import check_language

        try:
            return check_language(proposal["value"])
        except SwiftConfigError as exc:
            raise TraitError(str(exc)) from None

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        # values set in ipython_config.py or on the command line reach the core too
        for name in settings.HELP:
            setattr(settings, name, getattr(self, name))

    @validate(*CHECKS)
    def _check(self, proposal: Any) -> Any:
        try:
            return CHECKS[proposal["trait"].name](proposal["value"])
        except SwiftConfigError as exc:
            raise TraitError(str(exc)) from None

    @observe(
        "cache_dir",
        "workspace",
        "default_model",
        "device",
        "host",
        "port",
        "api_key",
        "verbose_errors",
        "trust_remote_code",
        "device_lease",
        "stall_seconds",
    )
    def _write_through(self, change: Any) -> None:
        name, value = change["name"], change["new"]
        try:  # traitlets may notify before it rolls back a value that failed validation
            setattr(settings, name, value)
        except SwiftConfigError:
            return

    @line_cell_magic
    def swift(self, line: str, cell: str | None = None) -> Any:
        """Run a kernel_magics subcommand: ``%swift --help`` lists them."""
        if not line.strip() and cell is None:  # %swift alone: the launcher panel
            return load("kernel_magics.widgets.launcher:launcher")(self.language)
        try:
            call = cli.parse(line, cell, prog="%%swift" if cell is not None else "%swift")
            if call.help is not None:
                print(call.help)
                return None
            for name in call.command.notebook_functions:
                if name in call.kwargs and self.shell is not None:
                    call.kwargs[name] = _notebook_functions(call.kwargs[name], self.shell.user_ns)
            if call.command.notebook and "verbose" in inspect.signature(call.command.function()).parameters:
                call.kwargs.setdefault("verbose", False)  # the dashboard shows the run's notes: not printed twice
            if call.command.notebook:  # a cell with a panel: no tqdm bars above it while it works
                with quiet_progress_bars() as keep_quiet_until_done:
                    result = call.run()
                    keep_quiet_until_done(result)
            else:
                result = call.run()
            if call.command.notebook and result is not None:
                return load(call.command.notebook)(result)
            return result
        except SwiftError as exc:
            if settings.verbose_errors:
                raise
            raise UsageError(str(exc)) from None


def _notebook_functions(names: Any, namespace: dict[str, Any]) -> Any:
    """``%%swift grpo --reward my_reward``: names of functions defined in the notebook become the functions
    (other names — built-ins, module:function — pass through)."""
    if names is None:
        return None
    items = names if isinstance(names, list) else [names]
    return [namespace[n] if isinstance(n, str) and callable(namespace.get(n)) else n for n in items]


def unregister(ipython: Any) -> None:
    """Stop this kernel's jobs and remove the magics (``%unload_ext kernel_magics``)."""
    from .jobs import stop_all

    stop_all()
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("swift", None)
    manager.registry.pop("SwiftMagics", None)
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, SwiftMagics)]
