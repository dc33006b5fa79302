#!/usr/bin/env python
"""Side-by-side throughput of WDSR: eager reference, torch.compile, FastWDSR on every backend, per-op rows.

    python benchmarks/run.py --quick --device cpu        # under a minute, anywhere
    python benchmarks/run.py --device cuda               # the full GPU table (see benchmarks/README.md)

All options: python benchmarks/run.py --help (the same as `wdsr-fast bench`).
"""
import sys

from wdsr_fast.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
