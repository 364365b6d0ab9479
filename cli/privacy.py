"""``microtune forget``: erase one person's data from every store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.app import app, console, settings


@app.command()
def forget(
    user: Annotated[
        str | None,
        typer.Option(help="The user id the shop knows (or its p_... pseudonym): every session."),
    ] = None,
    session: Annotated[str | None, typer.Option(help="One session id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase a user, or one session, from every store of the home: raw events,
    quarantine, the event inbox, the offline tables, the online store (SQLite or
    Redis), the decision log and the label queue.

    Rewritten files keep no copy of the rows; SQLite pages that held them are
    overwritten. An audit record (the id hashed under the audit key, the time,
    the counts per store) is appended to HOME/audit/erasures.jsonl. Running it
    again removes nothing more. It holds the features lock, so it waits for a
    running `build_features`; running scorers keep serving. Models keep what
    they learnt until they are retrained (docs/operations.md, "Erasure").
    """
    import json

    from cli.app import flows_on
    from core.errors import InputError
    from flows.locks import FEATURES, held
    from stores.erasers import forget as erase

    if (user is None) == (session is None):
        raise InputError("name exactly one of --user or --session (see `microtune forget --help`)")
    s = settings()
    with flows_on(s), held(FEATURES):
        report = erase(
            s,
            user=user,
            session=session,
            progress=None if as_json else lambda name, n: console.print(f"{name}: {n:,} removed"),
        )
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    t = Table("store", "rows removed", title=f"forget {report.kind} {report.subject}")
    for name, n in report.removed.items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    console.print(f"{report.sessions:,} session(s); audit: {s.home / 'audit' / 'erasures.jsonl'}")
