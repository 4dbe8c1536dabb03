"""kernel_magics.serve: OpenAI-compatible servers started from the kernel, and chatting with them.

``km.serve(...)`` is :func:`kernel_magics.serve.api.serve`. Importing this package makes the attribute
``kernel_magics.serve`` this module rather than the function, so the module itself is callable and
forwards to the function: ``km.serve("tiny")`` works whichever of the two the attribute holds.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .api import serve

        return serve(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
