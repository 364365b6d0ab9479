"""The experiment report: one self-contained HTML page with its plots.

Three pictures (matplotlib, embedded as PNG): each arm's lift against control
with its 95% and always-valid intervals (and the true lift, when known); the
lift per risk decile at decision time; and the cumulative lift day by day
inside its always-valid band. Then the tables the pictures summarise.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.files import atomic_write_bytes
from experiments.analysis import Analysis


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def lift_plot(a: Analysis) -> str:
    plt = _plt()
    arms = [x for x in a.arms if x.lift is not None]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.8 * max(len(arms), 1)))
    for i, arm in enumerate(arms):
        ax.plot(
            [arm.seq_ci_low, arm.seq_ci_high],
            [i, i],
            color="#9bb7d4",
            lw=8,
            solid_capstyle="butt",
            label="always-valid" if i == 0 else None,
        )
        ax.plot(
            [arm.ci_low, arm.ci_high],
            [i, i],
            color="#1f5fa8",
            lw=3,
            label="95% interval" if i == 0 else None,
        )
        ax.plot(arm.lift, i, "o", color="black", label="measured" if i == 0 else None)
        if arm.true_lift is not None:
            ax.plot(arm.true_lift, i, "D", color="#d62728", label="true" if i == 0 else None)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(arms)), [x.name for x in arms])
    ax.set_xlabel("conversion lift against control (absolute)")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def band_plot(a: Analysis) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    arms = sorted({b["arm"] for b in a.bands})
    groups = sorted({b["group"] for b in a.bands}, key=lambda g: (len(g), g))
    for k, arm in enumerate(arms):
        rows = {b["group"]: b for b in a.bands if b["arm"] == arm}
        xs = [i + (k - (len(arms) - 1) / 2) * 0.25 for i, g in enumerate(groups) if g in rows]
        bs = [rows[g] for g in groups if g in rows]
        lift = [b["lift"] for b in bs]
        below = [b["lift"] - b["ci_low"] for b in bs]
        above = [b["ci_high"] - b["lift"] for b in bs]
        ax.errorbar(xs, lift, yerr=[below, above], fmt="o", capsize=2, label=arm)
        pairs = zip(xs, bs, strict=True)
        true = [(x, b["true_lift"]) for x, b in pairs if b["true_lift"] is not None]
        if true:
            ax.plot(*zip(*true, strict=True), "D", color="#d62728", ms=4)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(range(len(groups)), [g.replace("decile ", "") for g in groups])
    ax.set_xlabel("risk decile at decision time (red: true lift)")
    ax.set_ylabel("lift")
    ax.legend(fontsize=8)
    return _png(fig)


def cumulative_plot(days: list[dict[str, Any]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for arm in sorted({d["arm"] for d in days}):
        rows = [d for d in days if d["arm"] == arm]
        xs = [datetime.fromtimestamp(d["day"] / 1e6, UTC).date() for d in rows]
        lift = [d["lift"] for d in rows]
        ax.plot(xs, lift, marker="o", label=arm)
        ax.fill_between(
            xs,
            [d["lift"] - d["half"] for d in rows],
            [d["lift"] + d["half"] for d in rows],
            alpha=0.15,
        )
    ax.axhline(0, color="grey", lw=1)
    ax.set_ylabel("cumulative lift (always-valid band)")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


ARM_COLUMNS = [
    "name",
    "sessions",
    "conversions",
    "rate",
    "lift",
    "ci_low",
    "ci_high",
    "seq_ci_low",
    "seq_ci_high",
    "relative_lift",
    "p_value",
    "chance_to_beat_control",
    "expected_loss",
    "cohens_h",
    "cuped_lift",
    "cuped_width_ratio",
    "revenue_per_session",
    "revenue_diff",
    "revenue_p_value",
    "margin_given",
    "true_lift",
    "verdict",
]


GROUP_COLUMNS = ["group", "arm", "sessions", "lift", "ci_low", "ci_high", "true_lift"]


def write_report(a: Analysis, days: list[dict[str, Any]], path: Path) -> Path:
    """The HTML report of ``a`` at ``path`` (written atomically)."""
    d = a.as_dict()
    pictures = [("Lift against control", lift_plot(a))]
    if a.bands:
        pictures.append(("Lift per risk decile", band_plot(a)))
    if days:
        pictures.append(("Cumulative lift, day by day", cumulative_plot(days)))
    imgs = "".join(
        f"<h2>{t}</h2><img alt='{t}' src='data:image/png;base64,{p}'>" for t, p in pictures
    )
    alerts = "".join(f"<p class='alert'>{html.escape(x)}</p>" for x in a.alerts)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>experiment {html.escape(a.experiment)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:3px 6px}}
.alert{{color:#b00;font-weight:bold}}</style></head><body>
<h1>Experiment {html.escape(a.experiment)}: {html.escape(a.verdict)}</h1>
<p>{html.escape(a.reason)}. Sample-ratio test p = {a.srm_p_value:.3g}; analysis:
{html.escape(a.exposure)}.</p>{alerts}{imgs}
<h2>Arms</h2>{_table(d["arms"], ARM_COLUMNS)}
<h2>Per risk decile</h2>{_table(d["bands"], GROUP_COLUMNS)}
<h2>Per device</h2>{_table(d["devices"], GROUP_COLUMNS)}
<h2>Per segment</h2>{_table(d["segments"], GROUP_COLUMNS)}
</body></html>"""
    atomic_write_bytes(path, page.encode())
    return path
