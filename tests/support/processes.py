"""Real processes for tests: free ports, and the project's own scripts started as children."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


_handed_out: set[int] = set()
# Below Linux's ephemeral range (ip_local_port_range, 32768-60999 by default), from which the kernel
# picks the source port of every outgoing connection: a port handed out here cannot be taken by
# one of those between the moment it is chosen and the moment the system under test binds it.
_PORTS = range(20000, 32768)


def free_port(count: int = 1, step: int = 10) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that no outgoing connection
    will take, never the same one twice in a session; with ``count``, the first of ``count`` such
    ports ``step`` apart (the instances of a replicated service, scripts/service)."""
    while True:
        first = random.choice(_PORTS[: len(_PORTS) - step * (count - 1)])
        ports = [first + step * index for index in range(count)]
        if _handed_out.intersection(ports) or not all(_bindable(port) for port in ports):
            continue
        _handed_out.update(ports)
        return first


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    """Poll ``condition`` until it is true; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g}s")
        time.sleep(interval)


class Child:
    """A script of this repository running in its own process group, output in ``log_path``."""

    def __init__(self, argv: list[str], *, env: Mapping[str, str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal the whole process group, wait, and kill what is left after ``timeout`` seconds."""
        if self.running():
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
