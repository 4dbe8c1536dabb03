"""kernel_magics.serve: OpenAI-compatible servers started from the kernel, and chatting with them.

``km.serve(...)`` is :func:`kernel_magics.serve.api.serve`. Importing this package makes the attribute
``kernel_magics.serve`` this module rather than the function, so the module itself is callable and
forwards to the function: ``km.serve("tiny")`` works whichever of the two the attribute holds.
"""

from kernel_magics.argspec import make_callable

make_callable(__name__, "kernel_magics.serve.api:serve")
