"""Look for ids in every file under a home: text, SQLite pages, and Parquet values.

Parquet pages are compressed, so their string columns are read as values;
gzip files are decompressed; every other file (JSON lines, SQLite databases,
HTML reports, pickles) is searched as bytes.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _strings(path: Path) -> bytes:
    table = pq.read_table(path)
    parts: list[bytes] = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            parts += [str(v).encode() for v in column.to_pylist() if v is not None]
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            parts.append(str(column.to_pylist()).encode())
    return b"\n".join(parts)


def find(home: Path, pattern: re.Pattern[bytes], skip: Iterable[Path] = ()) -> dict[str, list]:
    """Every file under ``home`` (but ``skip``) in which ``pattern`` occurs, with matches."""
    skipped = [p.resolve() for p in skip]
    hits: dict[str, list] = {}
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        if any(path.resolve().is_relative_to(s) for s in skipped):
            continue
        if path.suffix == ".parquet":
            data = _strings(path)
        else:
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
        found = pattern.findall(data)
        if found:
            hits[str(path.relative_to(home))] = sorted(set(found))[:5]
    return hits
