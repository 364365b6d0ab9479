"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _temp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = _temp(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def atomic_write_parquet(path: Path, table: pa.Table, **options: Any) -> Path:
    """Write ``table`` as Parquet (zstd unless ``options`` say otherwise), atomically."""
    tmp = _temp(path)
    pq.write_table(table, tmp, **{"compression": "zstd", **options})
    os.replace(tmp, path)
    return path
