"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _temp(path: Path) -> Path:
    """A temporary name beside ``path``, of this process and thread (two threads writing
    one file must not share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _sync(path: Path) -> None:
    """Flush ``path``'s data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(tmp: Path, path: Path, sync: bool) -> None:
    if sync:  # the data first, then the rename in the folder
        _sync(tmp)
    os.replace(tmp, path)
    if sync:
        _sync(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, sync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; ``sync``: on the
    disk when this returns (survives a power loss)."""
    tmp = _temp(path)
    tmp.write_bytes(data)
    _replace(tmp, path, sync)
    return path


def atomic_write_parquet(
    path: Path, table: pa.Table, *, sync: bool = False, **options: Any
) -> Path:
    """Write ``table`` as Parquet (zstd unless ``options`` say otherwise), atomically;
    ``sync``: on the disk when this returns."""
    tmp = _temp(path)
    pq.write_table(table, tmp, **{"compression": "zstd", **options})
    _replace(tmp, path, sync)
    return path
