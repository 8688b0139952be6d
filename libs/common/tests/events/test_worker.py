"""A worker's loops outlive any error of one round (issue 18, Deliver 2)."""

from __future__ import annotations

import threading

from pymongo.errors import OperationFailure
from taskflow_common.events.worker import Loop, polling, until_done

from tests.support.processes import wait_for


class Rounds:
    """A round of work returning (or raising) each of ``outcomes`` in turn, then 0."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = outcomes
        self.calls = 0

    def __call__(self) -> object:
        outcome = self.outcomes[self.calls] if self.calls < len(self.outcomes) else 0
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def running(loop: Loop) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def test_a_polling_loop_outlives_any_error_of_a_round() -> None:
    work = Rounds(RuntimeError("a bug"), OperationFailure("database is locked"), KeyError("x"), 1, 0)
    thread, stop = running(polling("test-polling", work, interval_seconds=0.01))
    try:
        wait_for(lambda: work.calls >= 6, timeout=10, what="rounds after the failed ones")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_until_done_retries_any_error_and_ends_once_the_step_returns() -> None:
    step = Rounds(RuntimeError("a bug"), OperationFailure("database is locked"), None)
    thread, stop = running(until_done("test-step", step, cap_seconds=0.01))
    thread.join(10)
    assert not thread.is_alive() and not stop.is_set()
    assert step.calls == 3
