#!/usr/bin/env python
"""Compressed style models vs the teacher, side by side, in one run (see benchmarks/README.md).

    python benchmarks/compress_style.py                  # table + results/compress_style.json + sheet PNG
    python benchmarks/compress_style.py --repeats 11 --sizes 256,512,1024

The same measurement as ``slimvision bench style``, with the outputs written under
``benchmarks/results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from slimvision.cli.main import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    extra = sys.argv[1:]
    sys.exit(main(["bench", "style", "--overwrite", "--report", str(RESULTS / "compress_style.json"),
                   "--sheet", str(RESULTS / "compress_style_sheet.png"), *extra]))
