"""``microtune segment``: cluster the sessions into micro-segments (the segment flow)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.app import app, console, flows_on, settings


@app.command()
def segment(
    window_days: Annotated[
        int | None,
        typer.Option(
            help="Days of ended sessions to cluster, up to the newest (default: "
            "MICROTUNE_SEGMENTS__WINDOW_DAYS, 7)."
        ),
    ] = None,
) -> None:
    """Run the segment flow: K-Means and HDBSCAN on the sessions' behaviour vectors,
    the better one registered as the champion segmenter, the `segment` feature written
    offline and online. Prints the segments with their purchase rates."""
    from flows.segment_flow import segment_sessions

    with flows_on(settings()):
        out = segment_sessions(window_days=window_days)
    m = out["metrics"]
    t = Table("segment", "name", "sessions", "share", "purchase rate", title=(
        f"segmenter v{out['version']}: {int(m['k'])} segments, silhouette "
        f"{m['silhouette']:.3f}, bootstrap ARI {m['bootstrap_ari']:.3f}"
    ))  # fmt: skip
    for row in out["segments"]:
        rate = row["purchase_rate"]
        t.add_row(
            str(row["segment"]),
            row["name"],
            str(row["sessions"]),
            f"{row['share']:.1%}",
            "" if rate is None else f"{rate:.1%}",
        )
    console.print(t)
    console.print(
        f"K-Means: k = {int(m['kmeans_k'])}, silhouette {m['kmeans_silhouette']:.3f}; HDBSCAN: "
        f"{int(m['hdbscan_k'])} clusters, silhouette {m['hdbscan_silhouette']:.3f}"
    )
    console.print(f"report: {out['report']}")
