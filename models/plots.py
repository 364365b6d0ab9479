"""Pictures of a trained model: reliability diagram, feature importance, Qini curves,
and of a segmentation: the PCA scatter and the segment profiles.

Each takes arrays and a path and writes one PNG; the flows decide where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.lgbm import LgbmRiskModel
from models.metrics import calibration_curve, expected_calibration_error


def plot_calibration(y: np.ndarray, p: np.ndarray, path: Path, title: str) -> Path:
    """Reliability diagram with the prediction histogram underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred, obs = calibration_curve(y, p)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6.5), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", label="perfect")
    ax.plot(pred, obs, marker="o", label=f"model (ECE {expected_calibration_error(y, p):.3f})")
    ax.set_ylabel("observed abandonment rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    hist.hist(p, bins=20, range=(0, 1), color="tab:blue", alpha=0.7)
    hist.set_xlabel("predicted abandonment risk")
    hist.set_ylabel("decisions")
    return _save(fig, path)


def plot_importance(model: LgbmRiskModel, x: np.ndarray, path: Path, top: int = 20) -> Path:
    """Mean absolute contribution (log-odds) of each feature over the rows of ``x``.

    Contributions include the linear base, so the bars show what drives the
    whole model's predictions, not only the booster's residual trees.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weight = np.abs(model.contribution_matrix(x)).mean(axis=0) if len(x) else np.zeros(0)
    order = np.argsort(weight)[::-1][:top][::-1]
    names = [model.card.columns[i] for i in order]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.3 * len(names) + 1)))
    ax.barh(names, weight[order], color="tab:orange")
    ax.set_xlabel("mean |contribution| to the log-odds")
    ax.set_title("Feature importance (LightGBM with its linear base)")
    return _save(fig, path)


def plot_qini(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], areas: dict[str, float], path: Path
) -> Path:
    """The uplift model's Qini curve per treatment, with random targeting as the
    straight line to each curve's end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (name, (fraction, gain)) in enumerate(curves.items()):
        colour = f"C{i}"
        ax.plot(fraction, gain, c=colour, label=f"{name} (AUUC {areas[name]:+.3f})")
        ax.plot([0, 1], [0, gain[-1]], c=colour, ls=":", lw=1)
    ax.axhline(0, c="grey", lw=0.8)
    ax.set_xlabel("share of sessions treated, best predicted gain first")
    ax.set_ylabel("incremental net revenue per session")
    ax.set_title("Qini curves: each treatment against none (dotted: random targeting)")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_segment_scatter(seg: Any, x: np.ndarray, names: dict[int, str], path: Path) -> Path:
    """The sessions on the segmenter's first two (whitened) principal components, coloured
    by segment (a seeded sample of 4,000), with each centroid and its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    rows = rng.choice(len(x), size=min(len(x), 4_000), replace=False)
    p = seg.project(x[rows])
    labels = seg.assign(x[rows])
    fig, ax = plt.subplots(figsize=(7.5, 6))
    cmap = plt.get_cmap("tab10")
    for i, sid in enumerate(seg.ids):
        mine = labels == sid
        ax.scatter(p[mine, 0], p[mine, 1], s=5, alpha=0.35, color=cmap(i % 10))
        c = seg.centroids[i]
        ax.scatter([c[0]], [c[1]], marker="X", s=120, color=cmap(i % 10), edgecolor="black")
        ax.annotate(
            f"{sid}: {names.get(sid, '')}",
            (c[0], c[1]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(f"Segments ({seg.method}, k = {seg.k}, silhouette {seg.silhouette:.2f})")
    return _save(fig, path)


def plot_segment_profiles(profiles: list[dict[str, Any]], terms: list[str], path: Path) -> Path:
    """Each segment's mean of each term, in standard deviations from the average session,
    with its size and purchase rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = np.array([[p["z"].get(t, 0.0) for t in terms] for p in profiles])
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.55 * len(profiles)))
    image = ax.imshow(z, cmap="RdBu_r", vmin=-1.5, vmax=1.5, aspect="auto")
    ax.set_xticks(range(len(terms)), terms, rotation=30, ha="right")
    rate = lambda p: "" if p["purchase_rate"] is None else f", buys {p['purchase_rate']:.1%}"  # noqa: E731
    ax.set_yticks(
        range(len(profiles)),
        [f"{p['segment']}: {p['name']} ({p['share']:.0%}{rate(p)})" for p in profiles],
    )
    fig.colorbar(image, ax=ax, label="standard deviations from the average session")
    ax.set_title("Segment profiles")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
