"""kernel_magics.export: merging adapters, exporting models (GGUF, bitsandbytes 4-bit, GPTQ, AWQ) and
evaluation. The functions are in :mod:`kernel_magics.export.api`.

Because the package and the public function share the name ``export``, the package itself is callable:
``kernel_magics.export(model_dir, format="gguf")`` runs :func:`kernel_magics.export.api.export`, whichever
of the two Python finds first as ``km.export``.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableExportModule(types.ModuleType):
    """This package, callable as :func:`kernel_magics.export.api.export`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .api import export

        return export(*args, **kwargs)

    @property
    def __signature__(self) -> Any:
        import inspect

        from .api import export

        return inspect.signature(export)


sys.modules[__name__].__class__ = _CallableExportModule
