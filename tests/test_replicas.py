"""Replicas behind the gateway (issue 21): `make run` with REPLICAS=2 serves every service from two
instances; under steady reads and writes through the gateway, a rolling restart of every instance
(scripts/reload, `make reload`) and a SIGKILL of one instance fail no read, lose no acknowledged
write, and answer no write 5xx that was applied. The gateway compresses JSON of 1 KiB and more and
answers HTTPS over HTTP/2 with the certificate of its local CA.

One system for the module, on the session's FerretDB and a broker vhost of its own.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import brotli
import psutil
import pytest
import requests

from tests.support.accounts import Account, sign_in, sign_up
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.infra import Infra
from tests.support.processes import ROOT, wait_for
from tests.support.system import SERVICES, Client, System

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def replicated(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    vhost = infra.fresh_vhost()
    system = System(tmp_path_factory.mktemp("replicas"), infra, replicas=2, BCRYPT_ROUNDS="4",
                    MONGODB_DB_PREFIX="replicas_", RABBITMQ_URL=vhost,
                    ADMIN_EMAIL=ADMIN_EMAIL, ADMIN_PASSWORD=ADMIN_PASSWORD)
    yield system.start(timeout=300)
    system.stop()
    infra.rabbitmqctl("delete_vhost", unquote(urlsplit(vhost).path[1:]))


def _once_more_if_closed(send: Callable[[], requests.Response]) -> requests.Response:
    """``send()``, and once more when the connection was closed without an answer, as a browser
    retries an idempotent request (RFC 9112 §9.3.1): a gateway reload closes its old workers'
    idle kept-alive connections, and a request sent on one as it closes is never read."""
    try:
        return send()
    except requests.ConnectionError:
        return send()


WRITE_TRIES = 5
"""Tries of one create, the first included, before the load gives it up as unanswered."""


class Load:
    """Steady reads and writes of one account's tasks through the gateway, each on its own thread.

    Reads alternate one task and a page of the list; any answer but 200 (or no answer) is a failed
    read. Each write creates a task with a title of its own and an Idempotency-Key, and is sent
    again with that key after a 5xx or a cut answer: a 201 is acknowledged; every other final
    outcome keeps the title, so the test can look for whether it was applied.
    """

    def __init__(self, gateway_url: str, account: Account) -> None:
        self.gateway_url = gateway_url
        self.account = account
        self.reads = 0
        self.failed_reads: list[str] = []
        self.acknowledged: list[str] = []
        self.unacknowledged: dict[str, str] = {}  # title → what came back
        self.retried = 0  # tries sent again after a 5xx or a cut answer
        self.stop = threading.Event()
        self.seed = Client(gateway_url).post("/api/v1/tasks", json={"title": "read"}, headers=account.headers).json()
        self.threads = [threading.Thread(target=target, daemon=True) for target in (self._read, self._write)]

    def _read(self) -> None:
        client = Client(self.gateway_url)
        paths = [f"/api/v1/tasks/{self.seed['id']}", "/api/v1/tasks?limit=5"]
        while not self.stop.wait(0.02):
            path = paths[self.reads % 2]
            try:
                status = _once_more_if_closed(lambda: client.get(path, headers=self.account.headers, timeout=10)).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            self.reads += 1
            if status != 200:
                self.failed_reads.append(f"{path}: {status}")

    def _write(self) -> None:
        """Creates as a careful client makes them: each with an Idempotency-Key, sent again with
        it when the answer is a 5xx or never arrives whole (an instance killed mid-request may
        have applied it); 201 at any try acknowledges it, once."""
        client = Client(self.gateway_url)
        while not self.stop.wait(0.05):
            title = f"written during restarts {uuid.uuid4().hex}"
            headers = {**self.account.headers, "Idempotency-Key": uuid.uuid4().hex}
            for _ in range(WRITE_TRIES):
                try:
                    response = client.post("/api/v1/tasks", json={"title": title}, headers=headers, timeout=10)
                    outcome = str(response.status_code)
                except requests.RequestException as error:
                    response, outcome = None, type(error).__name__
                if response is not None and response.status_code < 500:
                    break
                self.retried += 1
                time.sleep(0.5)
            if response is not None and response.status_code == 201:
                self.acknowledged.append(response.json()["id"])
            else:
                self.unacknowledged[title] = outcome

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def lost_writes(self) -> list[str]:
        """Acknowledged tasks the store no longer has (read a page of 100 at a time: one GET per task
        would meet the gateway's rate limit)."""
        client = Client(self.gateway_url)
        stored: set[str] = set()
        for page in itertools.count(1):
            listed = client.get("/api/v1/tasks", params={"page": page, "limit": 100}, headers=self.account.headers)
            assert listed.status_code == 200, listed.text
            stored.update(task["id"] for task in listed.json()["items"])
            if page * 100 >= listed.json()["total"]:
                break
        return [task for task in self.acknowledged if task not in stored]

    def applied_unacknowledged(self) -> dict[str, str]:
        """Writes answered with something else than 201 (a 5xx, or nothing) that the store holds."""
        client = Client(self.gateway_url)
        applied = {}
        for title, outcome in self.unacknowledged.items():
            found = client.get("/api/v1/tasks", params={"q": title}, headers=self.account.headers).json()["total"]
            if found:
                applied[title] = outcome
        return applied


def _upstreams_used(system: System, since: int) -> dict[str, set[str]]:
    """For each service, the instance addresses the gateway passed requests to, from its log's
    byte ``since`` on (one JSON line per request, scripts/gateway's access log)."""
    used: dict[str, set[str]] = {name: set() for name in SERVICES}
    with open(system.log_dir / "gateway.log", "rb") as log:
        log.seek(since)
        for line in log.read().decode(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            service = entry["path"].split("/")[3] if entry["path"].startswith("/api/v1/") else ""
            service = {"notifications": "notify"}.get(service, service)
            if service in used and entry["upstream"]:
                used[service].update(address.strip() for address in entry["upstream"].split(","))
    return used


def test_every_service_is_served_by_each_of_its_instances(replicated: System) -> None:
    since = (replicated.log_dir / "gateway.log").stat().st_size
    client = Client(replicated.gateway_url)
    account = sign_up(client)
    for _ in range(20):
        assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 200
        assert client.get("/api/v1/tasks", headers=account.headers).status_code == 200
        assert client.get("/api/v1/notifications", headers=account.headers).status_code == 200
        assert client.get("/api/v1/admin/stats", headers=account.headers).status_code == 403
    used = _upstreams_used(replicated, since)
    for name in SERVICES:
        instances = {f"127.0.0.1:{replicated.ports[name] + 10 * index}" for index in range(2)}
        assert used[name] == instances, name
    status = replicated.supervisorctl("status")
    for name in SERVICES:
        for program in (name, f"{name}-worker"):
            for instance in (1, 2):
                assert f"{replicated.program(program, instance)} " in status, status


def _check(load: Load) -> None:
    assert load.reads > 50 and len(load.acknowledged) > 20, (load.reads, len(load.acknowledged))
    assert load.failed_reads == [], f"{len(load.failed_reads)} of {load.reads} reads failed: {load.failed_reads[:5]}"
    lost = load.lost_writes()
    assert lost == [], f"{len(lost)} of {len(load.acknowledged)} acknowledged writes are gone"
    assert load.applied_unacknowledged() == {}


@pytest.mark.timeout(900)
def test_a_rolling_restart_of_every_instance_fails_no_request(replicated: System) -> None:
    account = sign_up(Client(replicated.gateway_url))
    pids = {replicated.program(name, instance): _pid(replicated, replicated.program(name, instance))
            for name in [*SERVICES, *(f"{name}-worker" for name in SERVICES)] for instance in (1, 2)}
    with Load(replicated.gateway_url, account) as load:
        time.sleep(2)
        reload = subprocess.run([str(ROOT / "scripts/reload")], env=replicated.env, cwd=ROOT,
                                capture_output=True, text=True, timeout=800)
        assert reload.returncode == 0, reload.stderr
        time.sleep(2)
    restarted = {program for program, pid in pids.items() if _pid(replicated, program) != pid}
    assert restarted == set(pids), set(pids) - restarted
    _check(load)
    # A rolling restart is planned: not even a write goes unanswered.
    assert load.unacknowledged == {}


@pytest.mark.timeout(300)
def test_a_sigkilled_instance_fails_no_read_and_answers_no_applied_write_5xx(replicated: System) -> None:
    account = sign_up(Client(replicated.gateway_url))
    program = replicated.program("tasks", 1)
    master = _pid(replicated, program)
    with Load(replicated.gateway_url, account) as load:
        time.sleep(2)
        # The whole instance: its gunicorn master and every worker, requests in hand included.
        os.killpg(os.getpgid(master), signal.SIGKILL)
        wait_for(lambda: _pid(replicated, program) not in (0, master) and "RUNNING" in
                 replicated.supervisorctl("status", program), timeout=60, what="the instance started again")
        wait_for(lambda: _ready(replicated.service_url("tasks")), timeout=60, what="the instance ready")
        time.sleep(3)
    assert not psutil.pid_exists(master) or psutil.Process(master).status() == psutil.STATUS_ZOMBIE
    _check(load)


def _answers(client: Client, path: str, headers: dict[str, str]) -> bool:
    """Whether ``path`` answers 200 now (a timeout or a 504 is a no)."""
    try:
        return client.get(path, headers=headers, timeout=60).status_code == 200
    except requests.RequestException:
        return False


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _pid(system: System, program: str) -> int:
    return int(system.supervisorctl("pid", program).strip() or 0)


def _curl(system: System, path: str, *options: str) -> subprocess.CompletedProcess[str]:
    ca = Path(system.env["TASKFLOW_VAR"]) / "tls" / "ca.pem"
    return subprocess.run(
        ["curl", "-sS", "--cacert", str(ca), "-o", "/dev/null", "-D", "-", "-w", "%{http_version}", *options,
         f"https://127.0.0.1:{system.gateway_tls_port}{path}"],
        capture_output=True, text=True, timeout=30,
    )


def test_https_answers_over_http2_with_the_local_cas_certificate(replicated: System) -> None:
    result = _curl(replicated, "/api/v1/auth/jwks.json", "--http2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200"), result.stdout
    assert result.stdout.endswith("2")
    assert requests.get(f"{replicated.gateway_url}/api/v1/auth/jwks.json", timeout=10).status_code == 200


def test_json_of_1_kib_and_more_comes_back_compressed_and_shorter_json_does_not(replicated: System) -> None:
    client = Client(replicated.gateway_url)
    for encoding, decompress in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        large = client.get("/api/v1/tasks/openapi.json", headers={"Accept-Encoding": encoding}, stream=True)
        body = large.raw.read(decode_content=False)
        assert large.headers["Content-Encoding"] == encoding
        assert "Accept-Encoding" in large.headers["Vary"]
        document = json.loads(decompress(body))
        assert document["openapi"].startswith("3.1") and len(body) < len(json.dumps(document))
    small = client.get("/api/v1/auth/jwks.json", headers={"Accept-Encoding": "gzip, br"})
    assert 0 < len(small.content) < 1024
    assert "Content-Encoding" not in small.headers


@pytest.mark.timeout(600)
def test_a_rolling_restart_of_auth_answers_no_write_5xx(replicated: System) -> None:
    """Steady writes to auth (PATCH /auth/me, not rate-limited as credentials are) from several
    clients while `scripts/reload auth` restarts both instances: every write is answered 200."""
    account = sign_up(Client(replicated.gateway_url))
    outcomes: list[str] = []
    stop = threading.Event()

    def write() -> None:
        client = Client(replicated.gateway_url)
        while not stop.wait(0.01):
            name = f"n {uuid.uuid4().hex[:8]}"  # setting a name is idempotent: sent once more if need be
            try:
                status = str(_once_more_if_closed(lambda: client.patch(
                    "/api/v1/auth/me", json={"name": name}, headers=account.headers, timeout=40)).status_code)
            except requests.RequestException as error:
                status = type(error).__name__
            outcomes.append(status)

    writers = [threading.Thread(target=write, daemon=True) for _ in range(6)]
    for writer in writers:
        writer.start()
    try:
        reload = subprocess.run([str(ROOT / "scripts/reload"), "auth"], check=False, env=replicated.env, cwd=ROOT,
                                capture_output=True, text=True, timeout=500)
    finally:
        stop.set()
        for writer in writers:
            writer.join(60)
    assert reload.returncode == 0, reload.stderr
    # A 409 is auth's answer to two renames racing, not the restart's: only 5xx and no answer count.
    failed = [status for status in outcomes if not status.isdigit() or status.startswith("5")]
    assert len(outcomes) > 100 and failed == [], f"{len(failed)} of {len(outcomes)} writes failed: {failed[:10]}"


def test_the_etag_of_a_large_task_read_through_the_gateway_is_accepted_in_if_match(replicated: System) -> None:
    client = Client(replicated.gateway_url)
    account = sign_up(client)
    created = client.post("/api/v1/tasks", json={"title": "large", "description": "x" * 1500}, headers=account.headers)
    assert created.status_code == 201, created.text
    read = client.get(f"/api/v1/tasks/{created.json()['id']}", headers={**account.headers, "Accept-Encoding": "gzip"})
    assert read.status_code == 200
    changed = client.patch(f"/api/v1/tasks/{created.json()['id']}", json={"title": "changed"},
                           headers={**account.headers, "If-Match": read.headers["ETag"]})
    assert changed.status_code == 200, (read.headers["ETag"], changed.text)


@pytest.mark.timeout(300)
def test_an_admin_change_succeeds_while_auths_first_instance_is_down(replicated: System) -> None:
    client = Client(replicated.gateway_url)
    admin = sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    user = sign_up(client)
    # Admin's first request backfills its read models from auth and tasks: after the other tests'
    # thousands of tasks that outlasts the gateway's 30 s. Done first, with both instances up.
    wait_for(lambda: _answers(client, "/api/v1/admin/stats", admin.headers), timeout=600, interval=1,
             what="admin's read models backfilled")
    program = replicated.program("auth", 1)
    replicated.supervisorctl("stop", program)
    try:
        assert client.get("/api/v1/auth/me", headers=user.headers).status_code == 200  # auth's second serves
        changed = client.patch(f"/api/v1/admin/users/{user.id}", json={"active": False}, headers=admin.headers)
    finally:
        replicated.supervisorctl("start", program)
        wait_for(lambda: _ready(replicated.service_url("auth")), timeout=120, what="auth's first instance ready")
    assert changed.status_code == 200, changed.text


@pytest.mark.timeout(180)
def test_a_stopping_notify_instance_ends_its_live_streams_instead_of_waiting_them_out(replicated: System) -> None:
    """A live stream runs for minutes; a worker asked to stop ends it at once (the client
    reconnects to another instance with ``Last-Event-ID``) rather than hold the restart for
    gunicorn's graceful timeout (20 s) and be cut off there."""
    user = sign_up(Client(replicated.gateway_url))
    program = replicated.program("notify", 1)
    stream = requests.get(f"{replicated.service_url('notify')}/api/v1/notifications/stream",
                          headers=user.headers, stream=True, timeout=30)
    assert stream.status_code == 200
    lines = stream.iter_lines()
    assert next(lines).startswith(b": TaskFlow live feed")
    started = time.monotonic()
    try:
        replicated.supervisorctl("stop", program)
        stopped_after = time.monotonic() - started
        rest = list(lines)  # ends cleanly (the chunked body's last chunk), no connection error
    finally:
        replicated.supervisorctl("start", program)
        wait_for(lambda: _ready(replicated.service_url("notify")), timeout=120, what="notify's first instance ready")
    assert stopped_after < 10, f"the stop waited {stopped_after:.1f} s for the stream"
    assert all(line.startswith((b":", b"retry", b"id", b"event", b"data")) or not line for line in rest)
