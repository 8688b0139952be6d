"""A service's worker process: its outbox relay and its consumers, one thread (and one broker
connection) each, stopped gracefully by SIGTERM or SIGINT; its Prometheus metrics, and those its
collectors read from the database, are served on ``WORKER_METRICS_PORT`` when that is set.

Each service's ``python -m taskflow_<service>.worker`` builds its loops and calls :func:`run`.
Every loop survives any error of one round (logged, waited out, tried again): :func:`polling`
and :func:`until_done` build such loops from one round's work; a loop that escapes them anyway
stops the worker, so that the process manager starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError

from .. import exposition
from . import broker
from .publisher import backoff_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loop:
    """A named long-running task: ``run(stop)`` returns soon after ``stop`` is set."""

    name: str
    run: Callable[[threading.Event], None]


def _log_failure(name: str, error: Exception, what_next: str, expected: tuple[type[Exception], ...] = ()) -> None:
    """An outage (the database's or the broker's) or an ``expected`` error in one line; anything
    else with its traceback."""
    if isinstance(error, (PyMongoError, *broker.CONNECTION_ERRORS, *expected)):
        log.warning("%s: %s: %s; %s", name, type(error).__name__, error, what_next)
    else:
        log.exception("%s: a round failed; %s", name, what_next, exc_info=error)


def polling(name: str, work: Callable[[], object], interval_seconds: float) -> Loop:
    """A loop calling ``work`` again at once while it returns something true (how much it did),
    else after ``interval_seconds``; a round that raises is logged and counts as idle."""

    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = work()
            except Exception as error:  # noqa: BLE001 (one round's failure must not end the loop)
                _log_failure(name, error, f"again in {interval_seconds:.0f} s")
                busy = 0
            if not busy:
                stop.wait(interval_seconds)

    return Loop(name, run)


def until_done(
    name: str, step: Callable[[], object], *, cap_seconds: float = 10.0, expected: tuple[type[Exception], ...] = ()
) -> Loop:
    """A loop running ``step`` until it returns (or the worker stops); each failure is logged
    (an outage or an ``expected`` error in one line) and ``step`` tried again after an
    exponential back-off capped at ``cap_seconds``."""

    def run(stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                step()
                return
            except Exception as error:  # noqa: BLE001 (tried again until done, as documented)
                failures += 1
                delay = backoff_seconds(failures, cap=cap_seconds)
                _log_failure(name, error, f"again in {delay:.1f} s", expected)
                stop.wait(delay)

    return Loop(name, run)


def run(
    loops: Sequence[Loop],
    *,
    setup: Sequence[Loop] = (),
    collectors: Iterable[Collector] = (),
    stop: threading.Event | None = None,
    join_seconds: float = 30.0,
) -> int:
    """Run ``setup`` to completion, one after the other (the broker topology), then ``loops`` on
    threads until SIGTERM/SIGINT (or ``stop``), then let each finish its work; ``collectors``
    (read at each scrape, e.g. the outbox depth) join the process's metrics.

    Returns:
        0 when every loop stopped cleanly within ``join_seconds``, else 1 (a loop crashed or hung).
    """
    stop = stop or threading.Event()
    crashed: list[str] = []

    def request_stop(signum: int, _frame: object) -> None:
        log.info("worker: %s received, finishing in-flight work", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    if os.environ.get("WORKER_METRICS_PORT"):
        exposition.serve(int(os.environ["WORKER_METRICS_PORT"]), exposition.this_process(collectors))

    def guarded(loop: Loop) -> None:
        try:
            loop.run(stop)
        except Exception:
            log.exception("worker: %s crashed; stopping the worker so it is restarted", loop.name)
            crashed.append(loop.name)
            stop.set()

    for step in setup:
        if not stop.is_set():
            guarded(step)
    if stop.is_set():
        return 1 if crashed else 0
    threads = [threading.Thread(target=guarded, args=(loop,), name=loop.name) for loop in loops]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(join_seconds)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        log.error("worker: %s did not stop within %.0fs", ", ".join(stuck), join_seconds)
    return 1 if stuck or crashed else 0
