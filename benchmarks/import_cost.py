"""How much does `%load_ext kernel_magics` cost next to `import ipywidgets`?

    python benchmarks/import_cost.py

Each side runs in fresh interpreters (so nothing is cached in sys.modules), several times; the table
shows the medians measured in this run and their ratio (target: < 2x).
"""

from __future__ import annotations

import statistics
import subprocess
import sys

REPEATS = 7

# Both sides start an IPython shell first (not timed) so we compare the extension with the import alone.
LOAD_EXT = """
import time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t = time.perf_counter()
ip.run_line_magic("load_ext", "kernel_magics")
print(time.perf_counter() - t)
"""
IMPORT_WIDGETS = """
import time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t = time.perf_counter()
import ipywidgets
print(time.perf_counter() - t)
"""


def measure(code: str) -> float:
    samples = []
    for _ in range(REPEATS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    ours = measure(LOAD_EXT)
    widgets = measure(IMPORT_WIDGETS)
    print(f"{'what':<28}{'median ms':>12}")
    print(f"{'%load_ext kernel_magics':<28}{ours * 1000:>12.1f}")
    print(f"{'import ipywidgets':<28}{widgets * 1000:>12.1f}")
    print(f"{'ratio (target < 2x)':<28}{ours / widgets:>12.2f}")


if __name__ == "__main__":
    main()
