"""A service's worker process: its outbox relay and its consumers, one thread (and one broker
connection) each, stopped gracefully by SIGTERM or SIGINT; its Prometheus metrics, and those its
collectors read from the database, are served on ``WORKER_METRICS_PORT`` when that is set.

Each service's ``python -m taskflow_<service>.worker`` builds its loops and calls :func:`run`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.registry import Collector

from .. import exposition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loop:
    """A named long-running task: ``run(stop)`` returns soon after ``stop`` is set."""

    name: str
    run: Callable[[threading.Event], None]


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
