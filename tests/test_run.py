"""`make run`'s own path (issue 16): scripts/run, as a newcomer's machine runs it, builds FerretDB
and installs and starts the broker itself; under supervisor a process killed with SIGKILL comes
back by itself while the rest keeps serving, and no acknowledged write is lost.

One system for the module, started by scripts/run with no MONGODB_URI or RABBITMQ_URL (so it runs
its own FerretDB and RabbitMQ, as `make run` does), an empty tools directory (so bootstrap must
build FerretDB) and a RabbitMQ directory that does not exist yet (so bootstrap must install the
broker). Debian's archive is outside the machine: an ``apt-get`` first on PATH records what
bootstrap asks for and, for ``rabbitmq-server``, puts the package's scripts where bootstrap looks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from tests.support.accounts import Account, sign_up
from tests.support.infra import mongodb_answers
from tests.support.processes import ROOT, free_port, wait_for
from tests.support.system import Client, System

pytestmark = pytest.mark.e2e

DEBIAN_RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
APT_GET = """#!/bin/sh
echo "$*" >>"{calls}"
case " $* " in
  *" install "*" rabbitmq-server"*) ln -s {debian_bin} "$TASKFLOW_RABBITMQ_BIN" ;;
esac
"""
# SIGKILL reaches each kind of process; supervisor must bring it back within this many seconds.
COMES_BACK_SECONDS = 30


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    base = tmp_path_factory.mktemp("first-run")
    fake_apt = base / "apt"
    fake_apt.mkdir()
    (fake_apt / "apt-get").write_text(APT_GET.format(calls=base / "apt-get.calls", debian_bin=DEBIAN_RABBITMQ_BIN))
    (fake_apt / "apt-get").chmod(0o755)
    system = System(
        base,
        None,
        TASKFLOW_TOOLS=str(base / "tools"),
        TASKFLOW_RABBITMQ_BIN=str(base / "rabbitmq-bin"),
        PATH=f"{fake_apt}:{os.environ['PATH']}",
        BCRYPT_ROUNDS="4",
    )
    # Building FerretDB takes minutes from a cold Go cache, seconds from a warm one.
    yield system.start(timeout=900)
    system.stop()


def test_first_run_builds_ferretdb_and_installs_and_starts_the_broker(first_run: System) -> None:
    ferretdb = Path(first_run.env["TASKFLOW_TOOLS"]) / "bin" / "ferretdb"
    version = subprocess.run([ferretdb, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "version: v1.24.2" in version
    calls = (first_run.base / "apt-get.calls").read_text().splitlines()
    assert any(re.search(r"\binstall\b.*\brabbitmq-server\b", call) for call in calls), calls
    assert mongodb_answers(first_run.mongodb_uri)
    status = first_run.supervisorctl("status")
    assert re.search(r"^ferretdb\s+RUNNING", status, re.MULTILINE) and re.search(
        r"^rabbitmq\s+RUNNING", status, re.MULTILINE
    ), status
    smoke = subprocess.run(
        [sys.executable, "scripts/smoke", first_run.gateway_url, "--wait", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert smoke.returncode == 0 and "smoke: passed" in smoke.stdout, smoke.stdout + smoke.stderr


def test_smoke_names_the_step_that_failed() -> None:
    smoke = subprocess.run(
        [sys.executable, "scripts/smoke", f"http://127.0.0.1:{free_port()}", "--wait", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert smoke.returncode == 1
    assert smoke.stderr.startswith(
        "smoke: FAILED: the services answering through the gateway: not done in time "
        "(last: [Errno 111] Connection refused)"
    ), smoke.stderr


class Writer:
    """Creates tasks through the gateway every 50 ms on a thread, keeping each one acknowledged (201)."""

    def __init__(self, gateway_url: str, account: Account) -> None:
        self.client = Client(gateway_url)
        self.account = account
        self.acknowledged: list[str] = []
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                response = self.client.post(
                    "/api/v1/tasks",
                    json={"title": "written while a process dies"},
                    headers=self.account.headers,
                    timeout=10,
                )
            except requests.RequestException:
                self.failures += 1
                continue
            if response.status_code == 201:
                self.acknowledged.append(response.json()["id"])
            else:
                self.failures += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)


def _pid(system: System, program: str) -> int:
    return int(system.supervisorctl("pid", program).strip())


def _running_again(system: System, program: str, killed: int) -> bool:
    line = system.supervisorctl("status", program)
    return "RUNNING" in line and _pid(system, program) != killed


def _serves(system: System, account: Account) -> bool:
    """A read and a write through the gateway both succeed."""
    client = Client(system.gateway_url)
    try:
        listed = client.get("/api/v1/tasks?limit=1", headers=account.headers, timeout=5)
        created = client.post("/api/v1/tasks", json={"title": "after the restart"}, headers=account.headers, timeout=5)
    except requests.RequestException:
        return False
    return listed.status_code == 200 and created.status_code == 201


def _read_back(client: Client, account: Account, task_id: str) -> int:
    """The status of reading a task back; a 429 (the gateway's per-address limit, which a check of
    a few hundred tasks at once exceeds) is waited out as its Retry-After says, not taken for a loss."""
    for _ in range(30):
        answer = client.get(f"/api/v1/tasks/{task_id}", headers=account.headers)
        if answer.status_code != 429:
            return answer.status_code
        time.sleep(float(answer.headers.get("Retry-After", "1")))
    return 429


@pytest.mark.parametrize(
    ("program", "what"),
    [
        ("tasks", "a gunicorn master"),
        ("tasks-worker", "a worker with its relay"),
        ("ferretdb", "FerretDB"),
        ("rabbitmq", "RabbitMQ"),
        ("gateway", "nginx's master"),
        ("web", "the web client's nginx master"),
    ],
)
def test_sigkill_of_any_process_comes_back_and_loses_no_acknowledged_write(
    first_run: System, program: str, what: str
) -> None:
    account = sign_up(Client(first_run.gateway_url))
    killed = _pid(first_run, program)
    assert psutil.Process(killed).is_running(), f"{what} is not running"
    with Writer(first_run.gateway_url, account) as writer:
        wait_for(lambda: len(writer.acknowledged) >= 5, timeout=30, what="writes before the kill")
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(
            lambda: _running_again(first_run, program, killed),
            timeout=COMES_BACK_SECONDS,
            interval=0.25,
            what=f"{what} restarted by supervisor",
        )
        wait_for(
            lambda: _serves(first_run, account),
            timeout=COMES_BACK_SECONDS - (time.monotonic() - killed_at),
            interval=0.25,
            what="the system answering again",
        )
        written = len(writer.acknowledged)
        wait_for(lambda: len(writer.acknowledged) > written, timeout=10, what="writes after the restart")
    client = Client(first_run.gateway_url)
    lost = [task for task in writer.acknowledged if _read_back(client, account, task) != 200]
    assert lost == [], f"{len(lost)} of {len(writer.acknowledged)} acknowledged tasks are gone"
    assert re.search(
        rf"restarts: {re.escape(program)} exited; starting it again; \d+ restart", first_run.child.log_tail(400)
    )


def test_a_second_make_run_on_the_same_state_directory_refuses_and_leaves_the_first_alone(first_run: System) -> None:
    second = subprocess.run(["scripts/run"], cwd=ROOT, env=first_run.env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    assert "another make run is using" in second.stderr, second.stderr
    status = first_run.supervisorctl("status")
    assert status.count("RUNNING") == 13, status  # 12 programs and the restarts listener


def _listening(port: int) -> bool:
    return any(
        connection.laddr.port == port and connection.status == psutil.CONN_LISTEN
        for connection in psutil.net_connections("tcp")
    )


def _alive(process: psutil.Process) -> bool:
    """Running, not a zombie waiting to be reaped by whoever inherited it."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_of_supervisord_leaves_nothing_running_and_a_new_start_serves_the_same_data(first_run: System) -> None:
    """Last of the module: it ends the module's system and starts it again."""
    account = sign_up(Client(first_run.gateway_url))
    task = Client(first_run.gateway_url).post("/api/v1/tasks", json={"title": "kept"}, headers=account.headers)
    assert task.status_code == 201
    programs = [psutil.Process(int(pid)) for pid in re.findall(r"pid (\d+)", first_run.supervisorctl("status"))]
    ports = [
        first_run.gateway_port,
        first_run.gateway_tls_port,
        first_run.web_port,
        *first_run.ports.values(),
        *first_run.worker_metrics_ports.values(),
        int(first_run.env["MONGODB_PORT"]),
        int(first_run.env["RABBITMQ_PORT"]),
    ]
    assert first_run.child is not None
    os.kill(first_run.child.process.pid, signal.SIGKILL)
    wait_for(
        lambda: not any(_alive(program) for program in programs),
        timeout=90,
        what="every program ending with supervisord",
    )
    wait_for(lambda: not any(_listening(port) for port in ports), timeout=30, what="every port free")
    first_run.stop()  # reaps the killed supervisord and closes its log
    first_run.start(timeout=300)
    client = Client(first_run.gateway_url)
    assert client.get(f"/api/v1/tasks/{task.json()['id']}", headers=account.headers).status_code == 200


REFUSED_ADMIN_EMAIL = {"ADMIN_EMAIL": "root@taskflow.test", "ADMIN_PASSWORD": "a passphrase"}


def test_a_refused_setting_stops_make_run_with_one_line_naming_it(tmp_path: Path) -> None:
    system = System(tmp_path, None, **REFUSED_ADMIN_EMAIL)
    completed = subprocess.run(["scripts/run"], cwd=ROOT, env=system.env, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    lines = [line for line in completed.stderr.splitlines() if "ADMIN_EMAIL" in line]
    assert len(lines) == 1 and lines[0].startswith("auth: refused setting: ADMIN_EMAIL: "), completed.stderr
    assert lines[0].endswith(
        "The part after the @-sign is a special-use or reserved name that cannot be used with email."
    )
    assert "Traceback" not in completed.stdout + completed.stderr
    assert not (tmp_path / "var" / "supervisord.conf").exists()  # nothing was started


def test_a_refused_setting_ends_gunicorns_master_once_with_one_line(tmp_path: Path) -> None:
    system = System(tmp_path, None, **REFUSED_ADMIN_EMAIL, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    completed = subprocess.run(
        [str(ROOT / ".venv/bin/gunicorn"), "-c", "services/auth/gunicorn.conf.py"],
        cwd=ROOT,
        env=system.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    output = completed.stdout + completed.stderr
    assert output.count("refused setting") == 1 and "ADMIN_EMAIL" in output and "Traceback" not in output, output


def test_the_settings_check_names_every_refusing_service_once() -> None:
    environment = {
        **os.environ,
        "BCRYPT_ROUNDS": "99",
        "MAIL_MAX_ATTEMPTS": "0",
        "ADMIN_EMAIL": "a@example.com",
        "ADMIN_PASSWORD": "short",
    }
    completed = subprocess.run(
        [
            str(ROOT / ".venv/bin/python"),
            "-m",
            "taskflow_common.settings",
            "taskflow_auth.settings:AuthSettings",
            "taskflow_tasks.settings:TasksSettings",
            "taskflow_notify.settings:NotifySettings",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        "auth: refused setting: BCRYPT_ROUNDS: Input should be less than or equal to 16; "
        "ADMIN_PASSWORD: must be 8 to 128 characters long",
        "notify: refused setting: MAIL_MAX_ATTEMPTS: Input should be greater than or equal to 1",
    ]
