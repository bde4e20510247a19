"""Run every benchmark in turn (``make bench``)."""

import importlib
import pkgutil
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")):
        print(f"\n=== benchmarks.{module}")
        importlib.import_module(f"benchmarks.{module}").main()
