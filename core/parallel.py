"""How many threads the batch paths use, and from what size they use them.

The builder's large array work (Parquet reads and writes, numpy scans and
gathers) releases the GIL, so it runs on several threads. Below
``PARALLEL_MIN_ROWS`` rows starting the threads costs more than they save.

>>> 1 <= THREADS <= 4
True
"""

from __future__ import annotations

import os

THREADS = max(1, min(4, os.cpu_count() or 1))
PARALLEL_MIN_ROWS = 200_000
