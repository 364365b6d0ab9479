"""What an analysis reads: decisions and events of a window, joined; the weights; the truth.

The arms' configured weights are read back from the decisions themselves:
every decision logs its ``propensity``, and under the rule policy a
decision's propensity is its variant's assignment probability, so a log
describes its own experiment even after the policy file changed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import NotReadyError
from core.settings import Settings
from events.raw_store import RawEventStore
from experiments.join import first_decisions, join_outcomes
from stores.decision_log import read_decisions

#: Outcomes are looked for this long after the window's last decision.
OUTCOME_HORIZON = timedelta(days=1)
_EVENT_COLUMNS = ["ts", "session_id", "event_type", "cart_value", "device", "consent"]
#: What ``read_decisions`` gives besides the features.
_DECISION_COLUMNS = frozenset(
    [
        "ts",
        "session_id",
        "user_id",
        "experiment",
        "variant",
        "policy_version",
        "propensity",
        "treatment_propensity",
        "risk",
        "risk_lgbm",
        "risk_river",
        "degraded",
        "drift_signal",
        "actions",
        "discount_percent",
        "treatment",
        "arm_policies",
        "segment",
    ]
)


def load_joined(
    settings: Settings, since: datetime, until: datetime, *, features: bool = False
) -> pa.Table:
    """Sessions first decided in ``[since, until)``, joined to what they did next.

    With ``features``, the features the first decision was made on follow, as
    ``feature:<name>`` columns (what an uplift model learns from).

    Degraded decisions count: such a session was assigned and got the safe
    decision, which is what its arm really did (intent to treat).
    """
    decisions = read_decisions(settings.paths.decisions, since, until)
    if decisions.num_rows == 0:
        raise NotReadyError(
            f"no decisions between {since:%Y-%m-%d %H:%M} and {until:%Y-%m-%d %H:%M} UTC in "
            f"{settings.paths.decisions}: serve some traffic (`microtune serve`, "
            "`microtune simulate`) or widen --since"
        )
    events = RawEventStore(settings.paths.raw_events).read(
        since, until + OUTCOME_HORIZON, columns=_EVENT_COLUMNS
    )
    joined = join_outcomes(decisions, events)
    if not features:
        return joined
    # join_outcomes keeps each session's first decision in first_decisions' order.
    first = first_decisions(decisions)
    for name in first.column_names:
        if name not in _DECISION_COLUMNS and name not in joined.column_names:
            joined = joined.append_column(f"feature:{name}", first.column(name))
    return joined


def experiments_in(joined: pa.Table) -> list[str]:
    """The experiments of a joined table, most sessions first."""
    names = joined.column("experiment").drop_null().to_pylist()
    return sorted(set(names), key=lambda n: (-names.count(n), n))


def weights_of(joined: pa.Table, experiment: str) -> dict[str, float]:
    """Each arm's assignment probability, as its decisions logged it (control first).

    >>> t = pa.table({"experiment": ["x"] * 3, "variant": ["b", "control", "b"],
    ...               "propensity": [0.8, 0.2, 0.8]})
    >>> weights_of(t, "x")
    {'control': 0.2, 'b': 0.8}

    A learning arm's propensity is its share times its probability of the
    treatment; the share is read back through ``arm_policies``:

    >>> t = t.append_column("treatment", pa.array(["cta", "none", "none"]))
    >>> t = t.append_column("arm_policies", pa.array(
    ...     ['{"b": {"cta": 0.5, "none": 0.5}}'] * 3)).set_column(
    ...     2, "propensity", pa.array([0.4, 0.2, 0.4]))
    >>> weights_of(t, "x")
    {'control': 0.2, 'b': 0.8}
    """
    t = joined.filter(pc.equal(joined.column("experiment"), experiment))
    shares = arm_shares(t)
    variants = {v for v in t.column("variant").to_pylist() if v is not None}
    return {v: shares.get(v, 1.0) for v in sorted(variants, key=lambda v: (v != "control", v))}


def arm_shares(t: pa.Table) -> dict[str, float]:
    """Each arm's share, read back from its decisions (control first).

    A decision's propensity is its arm's share times the arm's probability of
    the treatment it applied (1 for rules), so the share is the median of the
    propensity over that probability. Arms without a logged propensity are
    left out.
    """
    variant = t.column("variant").to_numpy(zero_copy_only=False)
    prop = pc.fill_null(t.column("propensity"), np.nan).to_numpy(zero_copy_only=False)
    prop = prop.astype(float)
    if "arm_policies" in t.column_names and t.column("arm_policies").null_count < t.num_rows:
        prop = prop / _own_arm_probability(t, variant)
    out = {}
    names = {v for v in variant.tolist() if v is not None}
    for v in sorted(names, key=lambda v: (v != "control", v)):
        p = prop[variant == v]
        if np.isfinite(p).any():
            out[v] = float(np.nanmedian(p))
    return out


def _own_arm_probability(t: pa.Table, variant: np.ndarray) -> np.ndarray:
    """Each decision's probability, within its own arm, of the treatment it applied.

    1 for rule arms and for decisions logged before ``arm_policies`` existed.
    """
    out = np.ones(t.num_rows)
    policies = t.column("arm_policies").to_pylist()
    treatments = t.column("treatment").to_pylist()
    for i, (raw, key) in enumerate(zip(policies, treatments, strict=True)):
        if raw is not None and key is not None:
            p = (orjson.loads(raw).get(variant[i]) or {}).get(key)
            if p:
                out[i] = p
    return out


def latest_version(joined: pa.Table, experiment: str) -> tuple[pa.Table, int | None, int]:
    """The experiment's sessions assigned under its latest policy version.

    A window in which the policy changed mixes weights (and maybe rules): its
    arms are only comparable within one version. Returns the rows of the
    latest version, that version (None when none was logged) and how many
    sessions of earlier versions were left out.

    >>> t = pa.table({"experiment": ["x"] * 3, "policy_version": [1, 2, 2]})
    >>> rows, version, left_out = latest_version(t, "x")
    >>> rows.num_rows, version, left_out
    (2, 2, 1)
    """
    t = joined.filter(pc.equal(joined.column("experiment"), experiment))
    versions = t.column("policy_version").drop_null()
    if len(versions) == 0:
        return t, None, 0
    latest = pc.max(versions).as_py()
    keep = pc.equal(pc.fill_null(t.column("policy_version"), latest), latest)
    rows = t.filter(keep)
    return rows, latest, t.num_rows - rows.num_rows


def read_truth(path: Path | None) -> pa.Table | None:
    """A simulator's ``truth.parquet`` (or a folder of them), when there is one."""
    if path is None or not path.exists():
        return None
    files = [path] if path.is_file() else sorted(path.rglob("truth.parquet"))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def default_since(now: datetime | None = None) -> datetime:
    """The default window starts 30 days ago."""
    return (now or datetime.now(UTC)) - timedelta(days=30)
