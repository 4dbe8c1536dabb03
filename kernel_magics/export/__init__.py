"""kernel_magics.export: merging adapters, exporting models (GGUF, bitsandbytes 4-bit, GPTQ, AWQ) and
evaluation. The functions are in :mod:`kernel_magics.export.api`.

Because the package and the public function share the name ``export``, the package itself is callable:
``kernel_magics.export(model_dir, format="gguf")`` runs :func:`kernel_magics.export.api.export`, whichever
of the two Python finds first as ``km.export``.
"""

from kernel_magics.argspec import make_callable

make_callable(__name__, "kernel_magics.export.api:export")
