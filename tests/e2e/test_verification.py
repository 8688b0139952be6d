"""Email verification as a user lives it (DESIGN §4 auth, issue 17 §5): the mail notify writes
to the Maildir carries a link to the gateway's page, which a real Chromium opens; the page posts
the token and says so, and the account is verified."""

from __future__ import annotations

import subprocess
import tempfile

import pytest

from tests.support.accounts import sign_up
from tests.support.mail import VERIFY_SUBJECT, mails_to, verification_token
from tests.support.system import Client, System

pytestmark = pytest.mark.e2e


def _open_in_chromium(url: str) -> str:
    """The page's DOM once its script has run (headless Chromium, as test_docs renders its page)."""
    with tempfile.TemporaryDirectory() as profile:
        rendered = subprocess.run(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", url,
            ],
            capture_output=True, text=True, timeout=120,
        )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    return rendered.stdout


def test_the_link_in_the_mail_opens_a_page_that_verifies_the_account(gateway: Client, system: System) -> None:
    account = sign_up(gateway)
    token = verification_token(system, account.email)
    [mail] = [mail for mail in mails_to(system, account.email) if mail["Subject"] == VERIFY_SUBJECT]
    link = f"{system.gateway_url}/verify-email#token={token}"
    assert link in mail.get_body(("plain",)).get_content()  # the link's base is PUBLIC_URL, the gateway here

    assert "Your email address is confirmed" in _open_in_chromium(link)
    assert gateway.get("/api/v1/auth/me", headers=account.headers).json()["email_verified"] is True
    assert "already used" in _open_in_chromium(link)  # single use: the second visit shows the problem's detail


def test_the_page_and_its_files_come_from_the_gateway_with_a_strict_policy(gateway: Client) -> None:
    page = gateway.get("/verify-email")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    for name, media_type in (("verify-email.js", "text/javascript"), ("verify-email.css", "text/css")):
        served = gateway.get(f"/{name}")
        assert served.status_code == 200 and served.headers["Content-Type"].startswith(media_type)
