"""The project's own errors. Each message says what was wrong and what to do next."""

from __future__ import annotations


class MicrotuneError(Exception):
    """Base class of every error microtune raises on purpose."""

    #: HTTP status the API answers with when this error reaches a route.
    status_code: int = 500


class InputError(MicrotuneError):
    """The caller gave something unusable (a path, a window, a file format)."""

    status_code = 422


class NotFoundError(MicrotuneError):
    """A thing the caller named does not exist (a model, a session, a report)."""

    status_code = 404


class StoreError(MicrotuneError):
    """A store (Feast online/offline, raw event store, MLflow) failed or is unreachable."""

    status_code = 503


class NotReadyError(MicrotuneError):
    """A prerequisite step has not run yet, e.g. scoring before any model is promoted."""

    status_code = 409
