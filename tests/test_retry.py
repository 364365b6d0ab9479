"""The tasks' retry condition: store failures retry, input and prerequisite failures do not."""

from __future__ import annotations

import pytest
from prefect.states import Completed, Failed

from core.errors import InputError, NotFoundError, NotReadyError, StoreError
from flows.retry import IO_RETRIES, MODEL_RETRIES, transient


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (StoreError("online store unreachable"), True),
        (OSError("database is locked"), True),
        (InputError("no such file"), False),
        (NotReadyError("too few days"), False),
        (NotFoundError("no champion"), False),
    ],
)
def test_only_failures_that_may_pass_next_time_are_retried(error: Exception, retried: bool) -> None:
    assert transient(None, None, Failed(data=error)) is retried


def test_a_completed_state_and_the_policies() -> None:
    assert transient(None, None, Completed(data=1)) is True
    for policy in (IO_RETRIES, MODEL_RETRIES):
        assert len(policy["retry_delay_seconds"]) == policy["retries"]
        assert policy["retry_delay_seconds"] == sorted(policy["retry_delay_seconds"])
