"""How much does `%load_ext kernel_magics` cost next to `import ipywidgets`?

    python benchmarks/import_cost.py [--rounds 7] [--smoke]

Each measurement is a fresh interpreter (nothing cached in sys.modules) that first starts an IPython
shell (not timed), then times one thing with ``time.perf_counter``: ``%load_ext kernel_magics`` on one
side, ``import ipywidgets`` on the other. Each side runs once untimed first (the OS file cache then holds
both sides' files); then every round runs both, the side that goes first alternating. The table shows the
mean and median of each side and of the per-round ratios (target: < 2x).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _rounds import print_ratio, print_sides, run_rounds

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


def measure(code: str) -> dict[str, float]:
    """Seconds of the timed statement of ``code``, run in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"ms": float(out.stdout.strip().splitlines()[-1]) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (< 60 s)")
    options = parser.parse_args()
    rounds = 1 if options.smoke else options.rounds
    sides = {"%load_ext kernel_magics": LOAD_EXT, "import ipywidgets": IMPORT_WIDGETS}
    for code in sides.values():  # untimed warm-up of each side
        measure(code)
    results = run_rounds({name: lambda i, code=code: measure(code) for name, code in sides.items()}, rounds)
    print()
    print_sides(results, {"ms": "ms"})
    ours = [r["ms"] for r in results["%load_ext kernel_magics"]]
    widgets = [r["ms"] for r in results["import ipywidgets"]]
    print_ratio("ratio %load_ext / import ipywidgets", ours, widgets, "(target < 2x)")


if __name__ == "__main__":
    main()
