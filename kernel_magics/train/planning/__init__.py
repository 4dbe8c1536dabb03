"""Decisions made before any weight is read: the plan (method, dtype, batch layout), the memory estimate from
``config.json`` alone, the architecture it reads, and the speed levers on top of the plan."""
