"""Writing a log to disk: one file per day (JSON Lines or Parquet), ``oracle.parquet``
and ``ideal.parquet``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from events.contract import ARROW_SCHEMA, FIELD_NAMES
from events.synth.config import RELAXED_SCHEMA, GeneratedLog, GeneratorConfig
from events.synth.corruption import BAD_KINDS, _merge_order, _plan_extras
from events.synth.generate import generate_events
from events.synth.ideal import ideal_risk
from events.synth.world import DAY_MS

# --------------------------------------------------------------------------- writing


def _iso_ms(column: pa.ChunkedArray) -> list[str]:
    stamps = column.to_numpy().astype("datetime64[ms]")
    return [s + "Z" for s in np.datetime_as_string(stamps, unit="ms").tolist()]


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: ISO 8601 ``ts`` with ``Z``, null fields left out."""
    columns = [
        _iso_ms(table.column(name)) if name == "ts" else table.column(name).to_pylist()
        for name in FIELD_NAMES
    ]
    names = FIELD_NAMES
    return [
        {k: v for k, v in zip(names, values, strict=True) if v is not None}
        for values in zip(*columns, strict=True)
    ]


def _dump_lines(rows: list[dict[str, Any]]) -> list[bytes]:
    """Rows as JSON lines, each ending in a newline (one ``orjson`` call for all)."""
    text = orjson.dumps(rows)[1:-1].replace(b"},{", b"}\n{") + b"\n"
    lines = text.splitlines(keepends=True)
    if len(lines) != len(rows):  # some value held "},{": dump row by row
        option = orjson.OPT_APPEND_NEWLINE
        lines = [orjson.dumps(row, option=option) for row in rows]
    return lines


def _json_lines(table: pa.Table) -> list[bytes]:
    """Every row as one JSON line, like :func:`_json_rows` but a key set at a time."""
    pattern = np.zeros(table.num_rows, dtype=np.int64)
    for bit, name in enumerate(FIELD_NAMES):
        valid = table.column(name).is_valid().to_numpy(zero_copy_only=False)
        pattern |= valid.astype(np.int64) << bit
    lines = np.empty(table.num_rows, dtype=object)
    for code in np.unique(pattern).tolist():
        idx = np.flatnonzero(pattern == code)
        keys = [name for bit, name in enumerate(FIELD_NAMES) if code >> bit & 1]
        part = table.select(keys).take(pa.array(idx))
        columns = [
            _iso_ms(part.column(k)) if k == "ts" else part.column(k).to_pylist() for k in keys
        ]
        rows = list(map(dict, map(zip, repeat(keys), zip(*columns, strict=True))))
        lines[idx] = _dump_lines(rows)
    return list(lines.tolist())


def _bad_rows(
    rows: list[dict[str, Any]], kind: np.ndarray, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Copies of ``rows`` with one defect each, of the given :data:`BAD_KINDS`."""
    out = []
    for row, k in zip(rows, kind.tolist(), strict=True):
        bad = dict(row)
        BAD_KINDS[k].corrupt(bad, rng)
        out.append(bad)
    return out


def _dump_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(_dump_lines(rows)))


@dataclass
class _Day:
    """One day's valid rows and the extras that go into its files."""

    stem: Path
    table: pa.Table
    local: np.ndarray  # extras: row of the day they copy
    kind: np.ndarray
    pos: np.ndarray

    def bad_rows(self, rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Positions of the day's invalid rows among its extras, and the rows."""
        bad = np.flatnonzero(self.kind >= 0)
        sources = _json_rows(self.table.take(pa.array(self.local[bad])))
        return bad, _bad_rows(sources, self.kind[bad], rng)


def _write_day_jsonl(day: _Day, rng: np.random.Generator) -> list[Path]:
    lines = _json_lines(day.table)
    bad, rows = day.bad_rows(rng)
    copies = [lines[i] for i in day.local[day.kind < 0].tolist()]
    merged = lines + copies + _dump_lines(rows)
    pos = np.concatenate([day.pos[day.kind < 0], day.pos[bad]])
    path = day.stem.with_suffix(".jsonl")
    path.write_bytes(b"".join([merged[i] for i in _merge_order(len(lines), pos).tolist()]))
    return [path]


def _arrow_rows(rows: list[dict[str, Any]]) -> pa.Table:
    fixed = [{**r, "ts": datetime.fromisoformat(r["ts"])} if "ts" in r else r for r in rows]
    return pa.Table.from_pylist(fixed, schema=RELAXED_SCHEMA)


def _write_day_parquet(day: _Day, rng: np.random.Generator, schema: pa.Schema) -> list[Path]:
    """Valid rows, duplicates and the invalid rows Parquet can hold; the rest in a sidecar."""
    path = day.stem.with_suffix(".parquet")
    table = day.table.cast(schema)
    paths = [path]
    if len(day.kind):
        dup = day.kind < 0
        bad, rows = day.bad_rows(rng)
        typed = np.array([BAD_KINDS[k].parquet for k in day.kind[bad].tolist()], dtype=bool)
        copies = day.table.take(pa.array(day.local[dup])).cast(schema)
        held = _arrow_rows([r for r, t in zip(rows, typed.tolist(), strict=True) if t])
        table = pa.concat_tables([table, copies, held.cast(schema)])
        pos = np.concatenate([day.pos[dup], day.pos[bad][typed]])
        table = table.take(pa.array(_merge_order(day.table.num_rows, pos)))
        if not typed.all():
            side = day.stem.with_name(day.stem.name + ".badtypes.jsonl")
            order = np.flatnonzero(~typed)[np.argsort(day.pos[bad][~typed], kind="stable")]
            _dump_jsonl(side, [rows[i] for i in order.tolist()])
            paths.append(side)
    pq.write_table(table, path, compression="zstd")
    return paths


def _clear_day_files(folder: Path) -> None:
    """Remove day files of an earlier run, so the folder holds exactly one log."""
    for pattern in ("*.jsonl", "*.parquet"):
        for path in folder.glob(pattern):
            stem = path.name.split(".", 1)[0]
            if len(stem) == 10 and stem[4] == "-" and stem[7] == "-":
                path.unlink()


def write_event_log(
    cfg: GeneratorConfig,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    ideal: bool = True,
) -> GeneratedLog:
    """Generate the log of ``cfg`` and write it under ``out``.

    Writes ``out/events/YYYY-MM-DD.jsonl`` (or ``.parquet``) for every day, holding
    the events whose ``ts`` falls on that day, ``out/oracle.parquet`` with the
    ground truth per session and, unless ``ideal`` is false, ``out/ideal.parquet``
    with the ideal risk at every possible decision point
    (:func:`events.synth.ideal.ideal_risk`).

    With ``cfg.bad_rate > 0`` each day file also gets invalid rows of every kind
    in :data:`BAD_KINDS` and exact duplicates of valid rows (a copy comes after its
    original); in Parquet format, rows whose wrong types a typed column cannot
    hold go into ``out/events/YYYY-MM-DD.badtypes.jsonl`` instead, and the day
    files use :data:`RELAXED_SCHEMA` so missing required fields can be null. Day
    files left by an earlier run in ``out/events`` are removed first.

    Parameters
    ----------
    cfg:
        What to generate.
    out:
        Output folder (created if needed).
    progress:
        Called as ``progress(rows_written, rows_total)`` before the first and after
        every day file.
    ideal:
        Write ``ideal.parquet`` (about 0.5 s per 1,000 sessions).

    Returns
    -------
    GeneratedLog
        Paths and counts of what was written.
    """
    out = Path(out)
    events, oracle = generate_events(cfg)
    folder = out / "events"
    folder.mkdir(parents=True, exist_ok=True)
    _clear_day_files(folder)
    ts = events.column("ts").cast(pa.int64()).to_numpy() // 1000 - cfg.start_ms
    bounds = np.searchsorted(ts, np.arange(cfg.days + 1, dtype=np.int64) * DAY_MS)
    bounds[-1] = events.num_rows
    rng = np.random.default_rng([cfg.seed, 2])
    extras = _plan_extras(cfg, bounds, rng)
    total = events.num_rows + len(extras.kind)
    schema = RELAXED_SCHEMA if cfg.bad_rate > 0 else ARROW_SCHEMA
    files: list[Path] = []
    if progress is not None:
        progress(0, total)
    done = 0
    for d in range(cfg.days):
        mine = extras.day == d
        day = _Day(
            stem=folder / (cfg.start + timedelta(days=d)).isoformat(),
            table=events.slice(int(bounds[d]), int(bounds[d + 1] - bounds[d])),
            local=extras.src[mine] - bounds[d],
            kind=extras.kind[mine],
            pos=extras.pos[mine],
        )
        if cfg.fmt == "parquet":
            files += _write_day_parquet(day, rng, schema)
        else:
            files += _write_day_jsonl(day, rng)
        done += day.table.num_rows + int(mine.sum())
        if progress is not None:
            progress(done, total)
    oracle_path = out / "oracle.parquet"
    pq.write_table(oracle, oracle_path, compression="zstd")
    ideal_path = out / "ideal.parquet"
    if ideal:
        pq.write_table(ideal_risk(events, oracle, cfg), ideal_path, compression="zstd")
    else:
        ideal_path.unlink(missing_ok=True)  # never leave another log's truth beside this one
    return GeneratedLog(
        files=sorted(files),
        oracle_path=oracle_path,
        ideal_path=ideal_path if ideal else None,
        events=events.num_rows,
        sessions=oracle.num_rows,
        users=len(set(oracle.column("user_id").drop_null().to_pylist())),
        bad_rows=extras.bad,
        duplicates=extras.duplicates,
    )
