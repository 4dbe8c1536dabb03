"""kernel_magics.search: find models by describing them (``km.search``, ``km.catalog``, ``%swift search``) and
pull new ones from the Hub (``km.refresh_catalog``, ``%swift search --refresh``).

Importing a submodule (``kernel_magics.search.commands`` is imported by the CLI) makes Python bind this
package to the name ``kernel_magics.search``, over the lazily loaded function of the same name. The
package is therefore callable and forwards to :func:`kernel_magics.search.api.search`, so
``km.search("small chinese chat model")`` works either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableSearchPackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .api import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableSearchPackage
