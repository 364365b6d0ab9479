"""``microtune``: the command line, one module per command group.

:mod:`cli.app` holds the app and its global options; importing the command
modules registers their commands on it.

>>> names = {c.callback.__name__ for c in app.registered_commands}
>>> {"info", "generate", "ingest", "train"} <= names
True
"""

from __future__ import annotations

import importlib

from cli.app import app, main

#: Command modules, in the order ``--help`` lists them: the data's way through.
COMMANDS = (
    "data", "features", "models", "segments", "drift", "simulate", "experiment", "policy",
    "privacy", "demo", "ops", "stream",
)  # fmt: skip
for _module in COMMANDS:
    importlib.import_module(f"cli.{_module}")

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
