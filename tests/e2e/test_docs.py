"""The API documentation through the gateway (issue 10): every service's OpenAPI 3.1 document and
one page listing all four, rendered by a real browser under the page's own strict
Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import tempfile

import pytest
from openapi_spec_validator import validate

from tests.support.system import Client, System

pytestmark = pytest.mark.e2e
DOCUMENTS = {
    "auth": "/api/v1/auth/openapi.json",
    "tasks": "/api/v1/tasks/openapi.json",
    "admin": "/api/v1/admin/openapi.json",
    "notify": "/api/v1/notifications/openapi.json",
}


@pytest.mark.parametrize(("service", "path"), DOCUMENTS.items())
def test_each_service_publishes_a_valid_openapi_3_1_document(gateway: Client, service: str, path: str) -> None:
    document = gateway.get(path).json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "ProblemDetails" in document["components"]["schemas"]


def test_the_docs_page_and_its_assets_come_from_the_gateway_not_a_cdn(gateway: Client) -> None:
    page = gateway.get("/api/v1/docs/")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert gateway.get("/api/v1/docs/swagger-ui-bundle.js").status_code == 200


def test_the_docs_address_without_its_slash_redirects_on_the_same_origin(gateway: Client) -> None:
    answer = gateway.get("/api/v1/docs", allow_redirects=False)
    assert answer.status_code == 308
    assert answer.headers["Location"] == "/api/v1/docs/"


def test_the_docs_page_runs_only_its_own_scripts(gateway: Client) -> None:
    page = gateway.get("/api/v1/docs/")
    policy = dict(directive.strip().split(" ", 1) for directive in page.headers["Content-Security-Policy"].split(";"))
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1  # the package's configuration script, allowed by its hash alone
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_a_headless_browser_renders_the_page_with_all_four_services(system: System) -> None:
    with tempfile.TemporaryDirectory() as profile:
        rendered = subprocess.run(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom",
                f"{system.gateway_url}/api/v1/docs/",
            ],
            capture_output=True, text=True, timeout=120,
        )
    dom = rendered.stdout
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    for service in DOCUMENTS:
        assert f">{service}</option>" in dom, service
    assert "TaskFlow auth" in dom  # the first document was fetched and rendered
    assert "/api/v1/auth/register" in dom
