"""Where features and decisions are kept: Feast's stores and microtune's own logs.

Importing this package turns off the run-time type checks that Feast
installs with typeguard's ``@typechecked`` (see :func:`_feast_without_typeguard`).
"""

from __future__ import annotations

import sys


def _feast_without_typeguard() -> None:
    """Make typeguard's ``@typechecked`` a no-op before Feast is imported.

    Feast decorates its classes with it, and typeguard then re-parses and
    re-compiles every decorated method when Feast is imported: about 2.5 s of
    every process that opens a feature store, on a 2-core machine
    (``bench/bench_cli.py``). The checks guard Feast's own arguments during
    development; Python's ``-O`` turns them off the same way. A process that
    imported Feast before this package keeps them.
    """
    if "feast" in sys.modules:
        return
    import typeguard

    def typechecked(target: object = None, **_: object) -> object:
        return target if target is not None else (lambda t: t)

    typeguard.typechecked = typechecked  # type: ignore[assignment]


_feast_without_typeguard()
