"""Running folds over events: encoding, the batch scan and the streaming step.

:func:`prepare_events` encodes raw columns for folding (sorted by entity then
time, types as small codes, event filters precomputed); :func:`scan` gives
every fold column after every event of a batch; :func:`fold_one` steps one
event of one entity from its stored state. Both run the folds' identical
floating-point operations, so their values are bit-identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.parallel import PARALLEL_MIN_ROWS, THREADS
from folds.fold import Fold, filters_of
from folds.match import EVENT_TYPE_CODES, PAGE_TYPE_CODES, Events, Segments


def prepare_events(
    columns: Mapping[str, Any],
    *,
    folds: Sequence[Fold] | None = None,
    keep: Sequence[str] = (),
    where: np.ndarray | None = None,
    arrival: Any = None,
) -> dict[str, np.ndarray]:
    """Encode raw event columns for folding, sorted by entity, time, then arrival.

    ``entity`` (the key) and ``ts`` (epoch seconds, float) are required;
    columns may be numpy arrays, sequences or Arrow arrays. The entity becomes
    an integer code (its names are kept under ``entity_names``:
    ``entity_names[code]``), ``event_type`` and ``page_type`` become small
    integer codes, other strings (``element_id``) become object arrays, and
    measurements become float64 with NaN for missing. Equal (entity, ts) pairs
    are ordered by ``arrival`` (the raw store's ``seq``; a missing one sorts
    first) or, without it, keep their input order.

    With ``folds``, only the columns those folds read are kept, and the masks
    of their event filters (:class:`Match`) are computed here, on the encoded
    columns, under :attr:`Match.key`; :func:`scan` and :func:`fold_one` give
    the same values either way; ``keep`` names further columns to keep. With
    ``where`` (a boolean mask over the input rows), only those rows are kept.

    >>> ev = prepare_events({"entity": ["b", "a", "b"], "ts": [2.0, 1.0, 1.0]})
    >>> ev["entity"].tolist(), ev["ts"].tolist(), ev["entity_names"].tolist()
    ([0, 0, 1], [1.0, 2.0, 1.0], ['b', 'a'])
    >>> from folds import Count, Match
    >>> hovers = Count("hovers", "Hover events.", Match(types=("hover",), elements=("price",)))
    >>> ev = prepare_events({"entity": ["a", "a"], "ts": [1.0, 2.0],
    ...                      "event_type": ["hover", "hover"], "element_id": ["price", None]},
    ...                     folds=[hovers], where=np.array([True, True]))
    >>> sorted(ev), ev[hovers.match.key].tolist()
    (["__match__('hover',)()('price',)", 'entity', 'entity_names', 'ts'], [True, False])
    """
    codes, entity_names = dictionary_codes(columns["entity"])
    ts = _numpy(columns["ts"])
    seq = None if arrival is None else np.nan_to_num(_numpy(arrival), nan=-1.0)
    order = _entity_time_order(codes, ts, where, seq)
    if folds is None:
        wanted, matches = set(columns), {}
    else:
        wanted = {c for f in folds for c in f.inputs()} | set(keep)
        matches = {m.key: m for f in folds for m in filters_of(f)}
    match_columns = {c for m in matches.values() for c in m.columns}
    prepared = {"entity": codes[order], "ts": ts[order]}
    texts: dict[str, tuple[np.ndarray, list[Any]]] = {}
    for name, v in columns.items():
        if name in ("entity", "ts") or name not in wanted | match_columns:
            continue
        if name in _CODED or _is_text(v):
            idx, values = dictionary_codes(v)
            texts[name] = (idx[order], values)
            if name in wanted:
                prepared[name] = _decode(name, *texts[name])
        else:
            prepared[name] = _numpy(v)[order]
    # Event filters straight from the dictionaries: one test per distinct value.
    for key, m in matches.items():
        prepared[key] = m.mask_coded(texts, len(order))
    prepared["entity_names"] = np.asarray(entity_names, dtype=object)
    return prepared


#: String columns that folds see as small integer codes.
_CODED = {"event_type": EVENT_TYPE_CODES, "page_type": PAGE_TYPE_CODES}


def _entity_time_order(
    codes: np.ndarray, ts: np.ndarray, where: np.ndarray | None, seq: np.ndarray | None
) -> np.ndarray:
    """Indices of the kept rows, sorted by entity code, time, then arrival (stable)."""
    rows = np.arange(len(codes)) if where is None else np.flatnonzero(where)
    keys, times = codes[rows], ts[rows]
    if len(times) > 1:
        later = times[1:] > times[:-1]
        tied = times[1:] == times[:-1]
        if seq is not None:
            arrived = seq[rows]
            tied &= arrived[1:] >= arrived[:-1]
            if not bool(np.all(later | tied)):
                return rows[np.lexsort((arrived, times, keys))]
        elif not bool(np.all(later | tied)):
            return rows[np.lexsort((times, keys))]
    # Already in time order (the raw store keeps its parts so): a stable sort by
    # entity alone gives entity-then-time order. Small keys sort by radix.
    small = keys.astype(np.uint16) if len(codes) and codes.max() < 65_536 else keys
    return rows[np.argsort(small, kind="stable")]


def _is_text(v: Any) -> bool:
    if isinstance(v, pa.ChunkedArray | pa.Array):
        t = v.type.value_type if pa.types.is_dictionary(v.type) else v.type
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))
    return np.asarray(v).dtype.kind in "OUS"


def dictionary_codes(v: Any) -> tuple[np.ndarray, list[Any]]:
    """Dictionary indices (-1 for null) and the distinct values of a string column.

    Dictionary-encoded Arrow columns (as Parquet reads them with
    ``read_dictionary``) are used as they are, without decoding every row.
    """
    if isinstance(v, pa.ChunkedArray):
        if pa.types.is_dictionary(v.type):
            v = v.unify_dictionaries()
        v = v.combine_chunks()
    elif not isinstance(v, pa.Array):
        v = pa.array(np.asarray(v, dtype=object), pa.string())
    if not pa.types.is_dictionary(v.type):
        v = pc.dictionary_encode(v.cast(pa.string()))
    idx = pc.fill_null(v.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return idx, v.dictionary.to_pylist()


def _decode(name: str, idx: np.ndarray, values: list[Any]) -> np.ndarray:
    """Ordered dictionary indices to fold input: codes for event and page types, else objects."""
    if name in _CODED:
        lut = np.array([_CODED[name].get(v, -1) for v in values] + [-1], dtype=np.int64)
        return lut[idx]
    return np.asarray([*values, None], dtype=object)[idx]


def _numpy(v: Any) -> np.ndarray:
    """Arrow or sequence to numpy: strings as objects, numbers as float64 (NaN for null)."""
    if isinstance(v, pa.ChunkedArray | pa.Array):
        if _is_text(v):
            return _decode("", *dictionary_codes(v))
        return pc.fill_null(v.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    a = np.asarray(v)
    return a.astype(object) if a.dtype.kind in "OUS" else a.astype(np.float64)


def scan(
    folds: Sequence[Fold], ev: Events, init: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every fold column after every event (columns aligned with ``ev``).

    ``ev`` must be sorted by entity then time (see :func:`prepare_events`).
    ``init`` holds each entity's stored state before the batch (every state
    column, indexed by entity code; see :func:`initial_states`); without it
    every entity starts empty.
    """
    ev = {k: v for k, v in ev.items() if k != "entity_names"}
    seg = Segments.of(ev["entity"])
    seg.is_first  # noqa: B018 (computed once, before the threads share it)
    # Masks of the folds' event filters, computed once for the whole batch;
    # Match.mask finds them under Match.key.
    matches = {m.key: m for f in folds for m in filters_of(f)}
    ev = {**ev, **{key: m.mask(ev) for key, m in matches.items() if key not in ev}}

    # Folds are independent, and numpy releases the GIL in its array loops, so
    # large batches scan their folds on several threads. Values do not depend
    # on the threads: every fold runs the same operations either way.
    def one(f: Fold) -> tuple[np.ndarray, ...]:
        return f.scan(ev, seg, None if init is None else tuple(init[c] for c in f.columns))

    if len(ev["ts"]) >= PARALLEL_MIN_ROWS and len(folds) > 1:
        with ThreadPoolExecutor(THREADS) as pool:
            states = list(pool.map(one, folds))
    else:
        states = [one(f) for f in folds]
    out: dict[str, np.ndarray] = {}
    for f, state in zip(folds, states, strict=True):
        out.update(zip(f.columns, state, strict=True))
    return out


def fold_one(
    folds: Sequence[Fold], state: Mapping[str, float] | None, event: Mapping[str, Any]
) -> dict[str, float]:
    """Streaming step: the state after one more event of one entity.

    ``state`` maps column names to the stored values (``None`` for an entity
    with no events yet); ``event`` is one prepared event (scalars).
    """
    out: dict[str, float] = {}
    ev = {k: np.asarray([v]) for k, v in event.items()}
    for f in folds:
        if state is None:
            st = f.initial(1)
        else:
            st = tuple(np.asarray([state[c]], dtype=np.float64) for c in f.columns)
        for col, v in zip(f.columns, f.step(st, ev), strict=True):
            out[col] = float(v[0])
    return out


def initial_states(
    folds: Sequence[Fold], stored: Sequence[Mapping[str, float] | None]
) -> dict[str, np.ndarray]:
    """State columns of entities 0..n-1: their stored values, or the folds' initial state.

    A column a stored state lacks (a fold declared after it was written)
    starts from its initial value.

    >>> from folds import Count
    >>> initial_states([Count("n", "Events.")], [{"n": 4.0}, None])["n"].tolist()
    [4.0, 0.0]
    """
    out: dict[str, np.ndarray] = {}
    for f in folds:
        for c, start in zip(f.columns, f.initial(len(stored)), strict=True):
            out[c] = np.array(
                [s[c] if s is not None and c in s else start[i] for i, s in enumerate(stored)],
                dtype=np.float64,
            )
    return out


def state_columns(folds: Sequence[Fold]) -> list[str]:
    """All stored columns of ``folds``, in declaration order."""
    return [c for f in folds for c in f.columns]


def inputs_of(folds: Sequence[Fold]) -> tuple[str, ...]:
    """Every event column ``folds`` read, sorted: their inputs and their filters' columns.

    >>> from folds import Count, Match
    >>> inputs_of([Count("n", "Events."), Count("h", "Hovers.", Match(types=("hover",)))])
    ('event_type',)
    """
    cols = {c for f in folds for c in f.inputs()} | {
        c for f in folds for m in filters_of(f) for c in m.columns
    }
    return tuple(sorted(cols))
