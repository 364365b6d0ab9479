"""The segmenter on real sessions: the UCI Online Shoppers data (12,330 sessions).

The data set has no events, only page counts and durations per session, so the
microtune vector (``feature_repo.features.SEGMENT_TERMS``) cannot be computed
from it. This run builds the closest behaviour vector the data allows, on the
same two axes (pace and focus), and runs the same method (whitened PCA,
K-Means with k by the silhouette in 4..10 beside HDBSCAN, the better kept,
bootstrap stability, names by profile). It prints the segments with their
purchase rates (``Revenue``). ``PageValues`` is left out: it is computed from
the purchases themselves, and would name the buyers.

Run: ``python bench/segments_uci.py``.
"""

from __future__ import annotations

import numpy as np

from feature_repo.features import SegmentTerm
from feature_repo.uci import load_uci
from models.segment_quality import bootstrap_stability, fit_both, name_of, profiles

TERMS = (
    SegmentTerm("pages_log", "log1p of the pages viewed", "many pages", "few pages"),
    SegmentTerm(
        "seconds_per_page_log", "log1p of the seconds per page", "slow reader", "fast reader"
    ),
    SegmentTerm("product_share", "product pages per page", "product-focused", "browsing"),
    SegmentTerm("info_share", "informational pages per page", "reads the info pages", "skips info"),
    SegmentTerm("bounce_rate", "Google Analytics bounce rate", "bounces", "stays"),
    SegmentTerm("exit_rate", "Google Analytics exit rate", "exits", "carries on"),
)


def vectors() -> tuple[np.ndarray, np.ndarray]:
    t = load_uci()
    col = {c: t.column(c).to_numpy(zero_copy_only=False).astype(float) for c in t.column_names
           if c not in ("uci_session_id", "event_timestamp", "month", "visitor_type")}  # fmt: skip
    pages = col["administrative"] + col["informational"] + col["product_related"]
    seconds = (
        col["administrative_duration"]
        + col["informational_duration"]
        + col["product_related_duration"]
    )
    per = np.maximum(pages, 1.0)
    x = np.column_stack(
        [
            np.log1p(pages),
            np.log1p(np.maximum(seconds, 0.0) / per),
            col["product_related"] / per,
            col["informational"] / per,
            col["bounce_rates"],
            col["exit_rates"],
        ]
    )
    return x, col["revenue"]


def main() -> None:
    x, bought = vectors()
    names = [t.name for t in TERMS]
    both = fit_both(x, names, seed=0, ks=tuple(range(4, 11)))
    seg = both.kept
    stability = bootstrap_stability(x, seg, rounds=5, seed=0)
    print(
        f"UCI Online Shoppers: {len(x):,} sessions, purchase rate {bought.mean():.1%}; "
        f"K-Means k = {both.kmeans.k} (silhouette {both.kmeans.silhouette:.3f}), HDBSCAN "
        f"{both.hdbscan.k} clusters (silhouette {both.hdbscan.silhouette:.3f}); kept "
        f"{seg.method}, bootstrap ARI {stability:.3f}"
    )
    for p in profiles(seg, x, bought):
        z = p["z"]
        top = ", ".join(
            f"{k} {v:+.2f}" for k, v in sorted(z.items(), key=lambda kv: -abs(kv[1]))[:3]
        )
        print(
            f"segment {p['segment']} ({name_of(np.array(list(z.values())), TERMS)}): "
            f"{p['sessions']:>5} sessions ({p['share']:.1%}), "
            f"purchase rate {p['purchase_rate']:.1%}  [{top}]"
        )


if __name__ == "__main__":
    main()
