"""The web client in a real browser (Debian's Chromium driven by Playwright), end to end through the
gateway: every element is found by its role and accessible name, as assistive technology finds it.
Every page a test opens must log no console error; on a failure each open page's screenshot is
written under the test's temporary directory (``<page>-<n>.png``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from tests.support.accounts import sign_in as sign_in_account
from tests.support.accounts import sign_up
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mail import verification_token
from tests.support.system import Client, System

from .conftest import OUTCOME

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# Without these Chromium keeps trying to reach the internet, which this machine has not.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
LIVE = 5_000
"""Milliseconds a change made elsewhere may take to show in an open page (DESIGN: within about a second)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser, system: System, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Page]]:
    """``open_page(expected=())`` opens a new page in a browser context of its own (its own storage:
    another person's browser) at the web client; after the test, none of them logged a console
    error. Chromium logs each answer of 4xx as an error ("Failed to load resource"): a test that
    provokes one names its status in ``expected``, and only that one is let through."""
    pages: list[tuple[Page, list[str]]] = []

    def make(expected: tuple[int, ...] = (), viewport: dict[str, int] | None = None) -> Page:
        context = browser.new_context(base_url=system.gateway_url, timezone_id="Europe/Paris",
                                      viewport=viewport or {"width": 1280, "height": 800})
        page = context.new_page()
        errors: list[str] = []
        allowed = re.compile(rf"^Failed to load resource: the server responded with a status of ({'|'.join(map(str, expected)) or 'none'}) ")

        def console(message: ConsoleMessage) -> None:
            if message.type == "error" and not allowed.match(message.text):
                errors.append(message.text)

        page.on("console", console)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(15_000)
        page.goto("/")
        pages.append((page, errors))
        return page

    yield make
    report = request.node.stash.get(OUTCOME, None)
    if report is not None and report.failed:
        for number, (page, _) in enumerate(pages):
            page.screenshot(path=tmp_path / f"page-{number}.png", full_page=True)
    for page, _ in pages:
        page.context.close()
    assert [errors for _, errors in pages if errors] == []


def sign_up_in(page: Page, name: str, email: str, password: str) -> None:
    page.get_by_role("button", name="Create an account").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()


def sign_in(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Tasks")).to_be_visible()


def go(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile(f"^{name}")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(f"^{name}"))


def test_the_gateway_serves_the_app_with_its_security_headers_and_immutable_assets(gateway: Client) -> None:
    page = gateway.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-cache"
    script = re.search(r'src="(/assets/app-[A-Z0-9]+\.js)"', page.text).group(1)
    asset = gateway.get(script, headers={"Accept-Encoding": "gzip"})
    assert asset.status_code == 200
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert asset.headers["Content-Encoding"] == "gzip"
    assert asset.headers["Content-Security-Policy"] == policy


def test_sign_up_add_a_task_due_soon_its_reminder_arrives_live_complete_it_and_the_stats_change(
    open_page: Callable[..., Page],
) -> None:
    page = open_page()
    sign_up_in(page, "Grace", f"grace-{datetime.now().timestamp():.0f}@example.com", "a long enough passphrase")
    inbox = page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile("^Inbox"))
    expect(inbox).to_have_accessible_name("Inbox 2 unread")  # the welcome and the verification link
    go(page, "Statistics")
    expect(page.get_by_test_id("stat-total")).to_have_text("0")

    go(page, "Tasks")
    page.get_by_label("Title", exact=True).fill("Pay the rent")
    due = datetime.now() + timedelta(minutes=30)  # within the reminder's 60 minutes; Paris time, as the page
    page.get_by_label(re.compile("^Due date")).fill(due.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label(re.compile("^Tags")).fill("Home, bills")
    page.get_by_role("button", name="Add task").click()
    task = page.get_by_role("list", name="Tasks").get_by_role("listitem").filter(has_text="Pay the rent")
    expect(task).to_contain_text("#home")
    expect(task).to_contain_text("Due ")
    shown_due = re.search(r"Due (.+?\d:\d\d(?: [AP]M)?)", task.inner_text()).group(1)

    expect(inbox).to_have_accessible_name("Inbox 3 unread", timeout=30_000)  # pushed: the page was not reloaded
    go(page, "Inbox")
    expect(page.get_by_role("heading", name="Reminder: Pay the rent (unread)")).to_be_visible()
    reminder = page.get_by_role("list", name="Notifications").get_by_role("listitem").filter(
        has=page.get_by_role("heading", name="Reminder: Pay the rent"))
    expect(reminder).to_contain_text(f"Your task “Pay the rent” is due {shown_due}.")  # Paris time, as the board
    expect(reminder).not_to_contain_text("UTC")

    go(page, "Tasks")
    page.get_by_role("button", name="Complete Pay the rent").click()
    expect(task).to_contain_text("Done")
    go(page, "Statistics")
    expect(page.get_by_test_id("stat-total")).to_have_text("1")
    expect(page.get_by_test_id("stat-done")).to_have_text("1")
    expect(page.get_by_role("img", name=re.compile("Tasks by status: To do 0, In progress 0, Done 1"))).to_be_visible()


def test_an_admin_deactivating_a_user_signs_their_open_page_out(open_page: Callable[..., Page], gateway: Client) -> None:
    user = sign_up(gateway)
    theirs = open_page(expected=(401, 403))  # the refused reconnection and refresh that sign it out
    sign_in(theirs, user.email, user.password)

    admin = open_page()
    sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
    go(admin, "Admin")
    admin.get_by_label("Search users").fill(user.email)
    admin.get_by_role("button", name=f"Deactivate {user.email}").click()
    expect(admin.get_by_role("status").filter(has_text=f"Deactivate {user.email}? They are signed out everywhere.")).to_be_visible()
    confirm = admin.get_by_role("button", name=f"Deactivate {user.email} now")
    expect(confirm).to_be_focused()  # the button pressed gave way to the confirmation
    admin.keyboard.press("Enter")
    expect(admin.get_by_role("button", name=f"Activate {user.email}")).to_be_focused()  # back where it started

    expect(theirs.get_by_role("heading", name="Sign in to TaskFlow")).to_be_visible(timeout=15_000)
    expect(theirs.get_by_role("status")).to_contain_text("deactivated")


def test_an_admin_changes_a_role_or_deactivates_only_once_confirmed(open_page: Callable[..., Page], gateway: Client) -> None:
    """An arrow key on a role select, or a press of Deactivate, only asks; Cancel sends nothing."""
    user = sign_up(gateway)
    page = open_page()
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    go(page, "Admin")
    changes: list[str] = []
    page.on("request", lambda request: changes.append(request.url) if request.method == "PATCH" else None)
    page.get_by_label("Search users").fill(user.email)
    role = page.get_by_label(f"Role of {user.email}")
    role.focus()

    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("status").filter(has_text=f"Make {user.email} an admin?")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name=f"Make {user.email} an admin")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name=f"Cancel, keep {user.email} a regular user")).to_be_focused()
    page.keyboard.press("Enter")
    expect(role).to_be_focused()
    expect(role).to_have_value("user")
    page.get_by_role("button", name=f"Deactivate {user.email}").click()
    page.get_by_role("button", name=f"Cancel, keep {user.email} active").click()
    expect(page.get_by_role("button", name=f"Deactivate {user.email}")).to_be_focused()
    assert changes == []
    assert gateway.get("/api/v1/auth/me", headers=user.headers).json()["role"] == "user"

    role.focus()
    page.keyboard.press("ArrowDown")
    page.get_by_role("button", name=f"Make {user.email} an admin").click()
    expect(role).to_be_focused()
    expect(role).to_have_value("admin")
    expect(page.get_by_role("status").filter(has_text="Make")).to_have_count(0)
    assert len(changes) == 1
    assert sign_in_account(gateway, user.email, user.password).user["role"] == "admin"


def test_a_task_changed_in_two_pages_is_a_conflict_with_a_reload_and_changes_show_live(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    created = gateway.post("/api/v1/tasks", json={"title": "Shared task"}, headers=user.headers).json()
    first, second = open_page(), open_page(expected=(412,))
    for page in (first, second):
        sign_in(page, user.email, user.password)
        page.get_by_role("button", name="Edit Shared task").click()

    first.get_by_role("list", name="Tasks").get_by_label("Title", exact=True).fill("Edited in the first page")
    first.get_by_role("button", name="Save task").click()
    expect(first.get_by_role("heading", name="Edited in the first page")).to_be_visible()

    second.get_by_role("list", name="Tasks").get_by_label("Title", exact=True).fill("Edited in the second page")
    second.get_by_role("button", name="Save task").click()
    alert = second.get_by_role("alert")
    expect(alert).to_have_text("Someone else changed this task since you opened it. Reload task")  # not the server's words too
    second.get_by_role("button", name="Reload task").click()
    expect(second.get_by_role("heading", name="Edited in the first page")).to_be_visible()

    changed = gateway.patch(f"/api/v1/tasks/{created['id']}", json={"title": "Changed through the API"},
                            headers=user.headers)
    assert changed.status_code == 200
    for page in (first, second):  # neither page reloads: the change arrives on the live feed
        expect(page.get_by_role("heading", name="Changed through the API")).to_be_visible(timeout=LIVE)


def test_every_page_of_an_admin_opens_without_a_console_error_and_fits_a_phone(open_page: Callable[..., Page]) -> None:
    page = open_page(viewport={"width": 375, "height": 740})
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    for name in ("Tasks", "Statistics", "Inbox", "Profile", "Admin"):
        go(page, name)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, name  # no sideways scrolling
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    page.get_by_label("Event type").fill("user.registered")
    page.get_by_label("Event type").press("Enter")
    expect(page.get_by_role("table").last).to_contain_text("user.registered")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in to TaskFlow")).to_be_visible()


def test_the_admin_chart_is_drawn_at_the_size_of_the_statistics_charts(open_page: Callable[..., Page]) -> None:
    page = open_page()
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    go(page, "Statistics")
    mine = page.get_by_role("img", name=re.compile("^Tasks by status")).bounding_box()
    go(page, "Admin")
    everyone = page.get_by_role("img", name=re.compile("^All tasks by status")).bounding_box()
    assert everyone["width"] <= mine["width"] * 1.1, (everyone, mine)  # not the whole section's width


def test_on_a_phone_the_filters_fold_away_and_the_users_table_needs_no_sideways_scrolling(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    phone = {"width": 390, "height": 844}
    user = sign_up(gateway)
    gateway.post("/api/v1/tasks", json={"title": "Seen on a phone"}, headers=user.headers)
    page = open_page(viewport=phone)
    sign_in(page, user.email, user.password)
    task = page.get_by_role("heading", name="Seen on a phone")
    expect(task).to_be_visible()
    assert task.bounding_box()["y"] < 1100  # not below six filters
    status = page.get_by_label("Filter by status")
    expect(status).to_be_hidden()
    page.get_by_text("Filters and sort").click()
    expect(status).to_be_visible()

    admin = open_page(viewport=phone)
    sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
    go(admin, "Admin")
    admin.get_by_label("Search users").fill(user.email)
    admin.get_by_role("button", name=f"Deactivate {user.email}").click()  # the row's longest content
    expect(admin.get_by_role("button", name=f"Deactivate {user.email} now")).to_be_visible()
    users = admin.get_by_role("table").first
    expect(users.get_by_role("row")).to_have_count(2)  # the header row and the user's
    assert users.evaluate("table => table.parentElement.scrollWidth <= table.parentElement.clientWidth")


def test_errors_show_the_problems_detail(open_page: Callable[..., Page]) -> None:
    page = open_page(expected=(401,))
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("The email or password is incorrect.")


def test_a_server_error_shows_its_request_id_to_report(open_page: Callable[..., Page]) -> None:
    page = open_page(expected=(500,))
    page.route("**/api/v1/auth/login", lambda route: route.fulfill(
        status=500, content_type="application/problem+json", headers={"X-Request-ID": "3f1c9a7e-request"},
        body='{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"Something broke."}'))
    page.get_by_label("Email").fill("somebody@example.com")
    page.get_by_label("Password").fill("any password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Something broke. (Request 3f1c9a7e-request)")


def test_signing_in_and_working_on_a_task_needs_only_the_keyboard(open_page: Callable[..., Page], gateway: Client) -> None:
    user = sign_up(gateway)
    page = open_page()
    expect(page.get_by_label("Email")).to_be_visible()  # the form is there before the keyboard looks for it
    page.keyboard.press("Tab")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(user.email)
    page.keyboard.press("Tab")
    page.keyboard.type(user.password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_focused()  # not lost with the form

    page.keyboard.press("Tab")
    expect(page.get_by_label("Title", exact=True)).to_be_focused()  # the board goes on from its heading
    page.keyboard.type("Typed, not clicked")
    page.keyboard.press("Enter")
    edit = page.get_by_role("button", name="Edit Typed, not clicked")
    edit.focus()
    page.keyboard.press("Enter")
    title = page.get_by_role("list", name="Tasks").get_by_label("Title", exact=True)
    expect(title).to_be_focused()  # the form that replaced the button has the keyboard
    page.keyboard.press("End")
    page.keyboard.type(" by anyone")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Typed, not clicked by anyone")).to_be_visible()
    edited = page.get_by_role("button", name="Edit Typed, not clicked by anyone")
    expect(edited).to_be_focused()  # saving hands the keyboard back to the button that opened the form

    page.keyboard.press("Enter")
    expect(title).to_be_focused()
    page.keyboard.type("Never saved")
    page.keyboard.press("Escape")  # leaves the form unsaved, the keyboard back on its button
    expect(edited).to_be_focused()
    expect(page.get_by_role("heading", name="Typed, not clicked by anyone")).to_be_visible()

    page.get_by_role("button", name="Complete Typed, not clicked by anyone").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("list", name="Tasks")).to_contain_text("Done")
    expect(edited).to_be_focused()  # the Complete button is gone: the keyboard is not lost with it

    page.get_by_role("button", name="Sign out", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sign in to TaskFlow")).to_be_focused()  # not lost with the page


def test_a_due_time_the_clocks_skip_is_refused_rather_than_moved(open_page: Callable[..., Page], gateway: Client) -> None:
    """The pages run in Europe/Paris, where 02:00–03:00 of 28 March 2027 does not exist."""
    user = sign_up(gateway)
    page = open_page()
    sign_in(page, user.email, user.password)
    page.get_by_label("Title", exact=True).fill("In the gap")
    page.get_by_label(re.compile("^Due date")).fill("2027-03-28T02:30")
    page.get_by_role("button", name="Add task").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Due date: 2027-03-28 02:30 does not exist in Europe/Paris (the clocks skip it): choose another time.")
    assert gateway.get("/api/v1/tasks", headers=user.headers).json()["total"] == 0


def test_a_refused_field_is_named_as_the_form_names_it(open_page: Callable[..., Page], gateway: Client) -> None:
    user = sign_up(gateway)
    page = open_page(expected=(422,))
    sign_in(page, user.email, user.password)
    page.get_by_label("Title", exact=True).fill("Too many tags")
    tags = page.get_by_label(re.compile("^Tags"))
    tags.fill("x" * 40)
    page.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("alert")).to_have_text("Tag 1: String should have at most 32 characters.")
    tags.fill(", ".join(f"tag{number}" for number in range(21)))
    page.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("alert")).to_have_text("Tags: List should have at most 20 items after validation, not 21.")


def test_an_old_message_goes_when_the_next_action_is_taken(open_page: Callable[..., Page], gateway: Client) -> None:
    user = sign_up(gateway)
    page = open_page(expected=(422,))
    sign_in(page, user.email, user.password)
    page.get_by_label("Title", exact=True).fill("First")
    page.get_by_role("button", name="Add task").click()
    expect(page.get_by_text("Added “First”.")).to_be_visible()
    page.get_by_label("Title", exact=True).fill("In the gap")
    page.get_by_label(re.compile("^Due date")).fill("2027-03-28T02:30")
    page.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_text("Added “First”.")).to_have_count(0)  # not beside the error of the next try

    go(page, "Profile")
    page.get_by_label("Name").fill("   ")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("alert")).to_contain_text("Name: ")
    page.get_by_role("button", name="Send a new verification link").click()
    expect(page.get_by_text("A new verification link is on its way")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_reload_stays_signed_in_by_rotating_the_refresh_token_and_keeps_no_access_token(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    page = open_page()
    sign_in(page, user.email, user.password)
    before = page.evaluate("sessionStorage.getItem('taskflow.refresh_token')")

    page.reload()
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()

    after = page.evaluate("sessionStorage.getItem('taskflow.refresh_token')")
    assert after and after != before  # rotated, without the user signing in again
    stored = page.evaluate("JSON.stringify({...sessionStorage, ...localStorage}) + document.cookie")
    assert user.access_token not in stored and "eyJ" not in stored  # no JWT kept anywhere but memory
    assert gateway.post("/api/v1/auth/refresh", json={"refresh_token": before}).status_code == 401  # spent


def test_a_failed_sign_out_says_so_and_a_busy_auth_signs_nobody_out(open_page: Callable[..., Page], gateway: Client) -> None:
    """A sign-out the server did not carry out shows its problem and leaves the page signed in
    (it exists to end a stolen session: a false "signed out" is the worst answer); a refresh that
    auth answers 503 keeps the refresh token, so the next reload is signed in again."""
    user = sign_up(gateway)
    page = open_page(expected=(503,))
    sign_in(page, user.email, user.password)
    unavailable = {"status": 503, "content_type": "application/problem+json",
                   "body": '{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"Auth is restarting."}'}

    page.route("**/api/v1/auth/logout-all", lambda route: route.fulfill(**unavailable))
    go(page, "Profile")
    page.get_by_role("button", name="Sign out everywhere").click()
    expect(page.get_by_text("Auth is restarting.")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()  # still signed in
    page.unroute("**/api/v1/auth/logout-all")

    token = page.evaluate("sessionStorage.getItem('taskflow.refresh_token')")
    page.route("**/api/v1/auth/refresh", lambda route: route.fulfill(**unavailable))
    page.reload()
    page.wait_for_timeout(1000)
    assert page.evaluate("sessionStorage.getItem('taskflow.refresh_token')") == token  # kept, not forgotten
    page.unroute("**/api/v1/auth/refresh")
    page.reload()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()


def test_a_duplicated_tab_never_spends_the_refresh_token_of_the_tab_it_copies(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    """A duplicated tab starts with a copy of the original's ``sessionStorage``; were it to rotate
    the copied refresh token, the original's next refresh would present a spent one and auth would
    revoke the whole sign-in (DESIGN §4). While the original is open, the copy starts signed out."""
    user = sign_up(gateway)
    original = open_page()
    sign_in(original, user.email, user.password)
    stored = original.evaluate("JSON.stringify({...sessionStorage})")

    copy = original.context.new_page()
    copy.add_init_script(f"for (const [key, value] of Object.entries({stored})) sessionStorage.setItem(key, value);")
    copy.goto("/")
    expect(copy.get_by_text("This tab is a copy of a tab that is signed in")).to_be_visible()
    expect(copy.get_by_role("button", name="Sign in")).to_be_visible()

    original.reload()  # rotates the token the copy was given: unspent, so still signed in
    expect(original.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    expect(original.get_by_role("button", name="Sign out", exact=True)).to_be_visible()


def test_a_tab_duplicated_while_the_original_is_busy_still_starts_signed_out(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    """The original is asked through the browser (its Web Lock), not by a message it must answer in
    time: a page whose main thread is busy (or frozen in the background) still counts as open."""
    user = sign_up(gateway)
    original = open_page()
    sign_in(original, user.email, user.password)
    stored = original.evaluate("JSON.stringify({...sessionStorage})")

    original.evaluate("setTimeout(() => { const end = Date.now() + 4000; while (Date.now() < end); }, 0)")
    copy = original.context.new_page()
    copy.add_init_script(f"for (const [key, value] of Object.entries({stored})) sessionStorage.setItem(key, value);")
    copy.goto("/")
    expect(copy.get_by_text("This tab is a copy of a tab that is signed in")).to_be_visible()

    original.reload()  # its token was never spent by the copy
    expect(original.get_by_role("button", name="Sign out", exact=True)).to_be_visible()


def test_an_admin_demoted_while_on_the_console_is_shown_the_board(open_page: Callable[..., Page], gateway: Client) -> None:
    admin = sign_in_account(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
    user = sign_up(gateway)
    assert gateway.patch(f"/api/v1/admin/users/{user.id}", json={"role": "admin"}, headers=admin.headers).status_code == 200
    # 401: the revoked token's reconnection, before the refresh; 403: a console request that was
    # in flight then, retried with the refreshed token of the demoted account
    page = open_page(expected=(401, 403))
    sign_in(page, user.email, user.password)
    go(page, "Admin")

    assert gateway.patch(f"/api/v1/admin/users/{user.id}", json={"role": "user"}, headers=admin.headers).status_code == 200

    expect(page.get_by_role("link", name="Admin")).to_have_count(0, timeout=15_000)
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()


def test_reading_the_inbox_in_one_tab_updates_the_unread_badge_of_another(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    first = open_page()
    sign_in(first, user.email, user.password)
    second = first.context.new_page()  # another tab of the same browser, signed in on its own
    second.goto("/")
    sign_in(second, user.email, user.password)
    unread = re.compile(r"^\d+ unread$")
    for page in (first, second):  # the welcome notification, and those of the sign-ins
        expect(page.get_by_label(unread)).to_be_visible(timeout=LIVE)

    go(first, "Inbox")
    first.get_by_role("button", name="Mark all read").click()

    expect(second.get_by_label(unread)).to_have_count(0, timeout=LIVE)


def test_an_edit_sends_only_what_changed_so_a_due_date_left_alone_keeps_its_seconds(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    due = (datetime.now(UTC) + timedelta(days=30)).replace(second=45, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = gateway.post("/api/v1/tasks", json={"title": "Keep my date", "due_date": due}, headers=user.headers).json()
    page = open_page()
    sign_in(page, user.email, user.password)
    page.get_by_role("button", name="Edit Keep my date").click()
    page.get_by_role("list", name="Tasks").get_by_label("Description").fill("Only this changes")
    page.get_by_role("button", name="Save task").click()
    expect(page.get_by_text("Only this changes")).to_be_visible()

    stored = gateway.get(f"/api/v1/tasks/{created['id']}", headers=user.headers).json()
    assert stored["description"] == "Only this changes"
    assert stored["due_date"] == due


def test_the_skip_link_moves_to_the_content_of_the_page_it_is_on(open_page: Callable[..., Page], gateway: Client) -> None:
    user = sign_up(gateway)
    page = open_page()
    sign_in(page, user.email, user.password)
    go(page, "Inbox")
    page.get_by_role("link", name="Skip to content").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("^Inbox"))
    assert page.evaluate("document.activeElement.id") == "content"


def test_deleting_the_last_task_of_the_last_page_shows_the_page_before(open_page: Callable[..., Page], gateway: Client) -> None:
    user = sign_up(gateway)
    for number in range(11):  # ten a page: the oldest alone on page 2
        gateway.post("/api/v1/tasks", json={"title": f"Task {number}"}, headers=user.headers)
    page = open_page()
    sign_in(page, user.email, user.password)
    page.get_by_role("button", name="Next page").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Task 0").click()

    expect(page.get_by_role("button", name="Delete Task 1", exact=True)).to_be_visible()
    expect(page.get_by_role("list", name="Tasks").get_by_role("listitem")).to_have_count(10)


def test_paging_to_the_last_or_first_page_keeps_the_keyboard_on_the_pager(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    for number in range(11):  # ten a page: two pages
        gateway.post("/api/v1/tasks", json={"title": f"Task {number}"}, headers=user.headers)
    page = open_page()
    sign_in(page, user.email, user.password)
    page.get_by_role("button", name="Next page").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(page.get_by_role("button", name="Previous page")).to_be_focused()  # Next page is disabled now
    page.keyboard.press("Enter")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(page.get_by_role("button", name="Next page")).to_be_focused()


def test_an_audit_filter_in_the_hour_the_clocks_skip_says_so_and_lists_nothing_unfiltered(
    open_page: Callable[..., Page],
) -> None:
    page = open_page()
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    go(page, "Admin")
    page.get_by_label("Since").fill("2027-03-28T02:30")
    expect(page.get_by_role("alert")).to_have_text(
        "Since: 2027-03-28 02:30 does not exist in Europe/Paris (the clocks skip it): choose another time.")
    expect(page.get_by_role("table")).to_have_count(1)  # the users' table only: no audit entries shown


def test_an_open_edit_form_and_what_was_typed_survive_changes_arriving_live(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    """A change elsewhere reloads the board; the oldest of ten tasks, being edited, would be paged
    out by an eleventh (newest first) and take the form with it: the list waits for the form."""
    user = sign_up(gateway)
    for number in range(10):
        gateway.post("/api/v1/tasks", json={"title": f"Task {number}"}, headers=user.headers)
    page = open_page()
    sign_in(page, user.email, user.password)
    page.get_by_role("button", name="Edit Task 0", exact=True).click()
    title = page.get_by_role("list", name="Tasks").get_by_label("Title", exact=True)
    title.fill("Task 0, edited while others change")

    added = gateway.post("/api/v1/tasks", json={"title": "Added elsewhere"}, headers=user.headers).json()
    gateway.patch(f"/api/v1/tasks/{added['id']}", json={"priority": "urgent"}, headers=user.headers)
    expect(page.get_by_text("Tasks changed while you edit")).to_be_visible(timeout=LIVE)
    expect(title).to_have_value("Task 0, edited while others change")
    expect(title).to_be_focused()

    page.get_by_role("button", name="Save task").click()
    expect(page.get_by_role("button", name="Edit Added elsewhere")).to_be_visible()  # held changes shown
    titles = {task["title"] for task in gateway.get("/api/v1/tasks?limit=20", headers=user.headers).json()["items"]}
    assert "Task 0, edited while others change" in titles


def test_a_filter_typed_but_not_yet_applied_survives_changes_arriving_live(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    page = open_page()
    sign_in(page, user.email, user.password)
    tag = page.get_by_label("Filter by tag")
    tag.press_sequentially("hom")  # no Enter yet
    gateway.post("/api/v1/tasks", json={"title": "Arrived live"}, headers=user.headers)
    expect(page.get_by_role("heading", name="Arrived live")).to_be_visible(timeout=LIVE)
    expect(tag).to_have_value("hom")
    expect(tag).to_be_focused()

    admin = open_page()
    sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
    go(admin, "Admin")
    fields = [admin.get_by_label(name) for name in ("Event type", "Actor id", "Subject id")]
    for field in fields:
        field.press_sequentially("user.")
    with admin.expect_response(re.compile("/api/v1/admin/audit")):
        admin.get_by_role("button", name="Refresh").dispatch_event("click")  # a reload; the field keeps the keyboard
    for field in fields:
        expect(field).to_have_value("user.")


def test_the_search_asks_once_typing_pauses_and_a_tag_filter_may_start_with_its_hash(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    gateway.post("/api/v1/tasks", json={"title": "Buy groceries", "tags": ["home"]}, headers=user.headers)
    gateway.post("/api/v1/tasks", json={"title": "File the report", "tags": ["work"]}, headers=user.headers)
    page = open_page()
    sign_in(page, user.email, user.password)
    tasks = page.get_by_role("list", name="Tasks")
    expect(tasks.get_by_role("listitem")).to_have_count(2)
    searches: list[str] = []
    page.on("request", lambda request: searches.append(request.url) if "/api/v1/tasks?" in request.url and "q=" in request.url else None)
    page.get_by_label("Search").press_sequentially("groceries")  # nine keystrokes, well within the pause
    expect(tasks.get_by_role("listitem")).to_have_count(1)
    expect(tasks).to_contain_text("Buy groceries")
    assert 1 <= len(searches) <= 3, searches  # not one a keystroke (a slow machine may pause once or twice)

    page.get_by_label("Search").fill("")
    expect(tasks.get_by_role("listitem")).to_have_count(2)
    page.get_by_label("Filter by tag").fill("#work")  # as the board shows tags
    page.get_by_label("Filter by tag").press("Enter")
    expect(tasks.get_by_role("listitem")).to_have_count(1)
    expect(tasks).to_contain_text("File the report")


def test_deleting_a_task_puts_the_keyboard_on_the_row_that_took_its_place(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    for title in ("Oldest", "Middle", "Newest"):
        gateway.post("/api/v1/tasks", json={"title": title}, headers=user.headers)
    page = open_page()
    sign_in(page, user.email, user.password)
    page.on("dialog", lambda dialog: dialog.accept())
    tasks = page.get_by_role("list", name="Tasks")

    page.get_by_role("button", name="Delete Middle").click()
    expect(tasks.get_by_role("listitem", name="Oldest")).to_be_focused()  # the next row
    page.get_by_role("button", name="Delete Oldest").click()
    expect(tasks.get_by_role("listitem", name="Newest")).to_be_focused()  # none after it: the one before
    page.get_by_role("button", name="Delete Newest").click()
    expect(page.get_by_role("heading", name="Your tasks")).to_be_focused()  # none left: the list's heading


def test_deleting_a_task_already_deleted_elsewhere_takes_it_off_the_board_without_an_error(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)
    gone = gateway.post("/api/v1/tasks", json={"title": "Gone"}, headers=user.headers).json()
    gateway.post("/api/v1/tasks", json={"title": "Open"}, headers=user.headers)
    page = open_page(expected=(404,))
    sign_in(page, user.email, user.password)
    page.on("dialog", lambda dialog: dialog.accept())
    tasks = page.get_by_role("list", name="Tasks")
    page.get_by_role("button", name="Edit Open").click()  # an open form holds the list as it is
    assert gateway.delete(f"/api/v1/tasks/{gone['id']}", headers=user.headers).status_code == 204
    expect(page.get_by_text("Tasks changed while you edit")).to_be_visible(timeout=LIVE)

    page.get_by_role("button", name="Delete Gone").click()
    expect(tasks.get_by_role("listitem", name="Gone")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_marking_a_notification_read_puts_the_keyboard_on_the_next_unread_one(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    user = sign_up(gateway)  # the welcome and the verification link: two unread
    page = open_page()
    sign_in(page, user.email, user.password)
    expect(page.get_by_label(re.compile(r"^\d+ unread$"))).to_be_visible(timeout=LIVE)
    go(page, "Inbox")
    marks = page.get_by_role("list", name="Notifications").get_by_role("button", name=re.compile("^Mark “.+” read$"))
    expect(marks).not_to_have_count(0)
    while marks.count() > 1:
        left = marks.count()
        marks.first.click()
        expect(marks).to_have_count(left - 1)
        expect(marks.first).to_be_focused()
    marks.first.click()
    expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_focused()  # none unread left


def test_the_profile_shows_an_address_verified_in_another_tab_without_a_reload(
    open_page: Callable[..., Page], gateway: Client, system: System,
) -> None:
    user = sign_up(gateway)
    page = open_page()
    sign_in(page, user.email, user.password)
    go(page, "Profile")
    expect(page.get_by_text("Your email address is not verified yet.")).to_be_visible()

    link = page.context.new_page()  # the link of the mail, opened in another tab of the browser
    link.goto(f"/verify-email#token={verification_token(system, user.email)}")
    expect(link.get_by_text("Your email address is confirmed")).to_be_visible()

    expect(page.get_by_text("Your email address is verified.")).to_be_visible(timeout=LIVE)
    expect(page.get_by_role("button", name="Send a new verification link")).to_have_count(0)


def test_asking_for_a_new_verification_link_says_it_is_on_its_way(open_page: Callable[..., Page], gateway: Client) -> None:
    user = sign_up(gateway)
    page = open_page()
    sign_in(page, user.email, user.password)
    go(page, "Profile")
    page.get_by_role("button", name="Send a new verification link").click()  # answered 202, without a body
    expect(page.get_by_text("A new verification link is on its way to your inbox.")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_reload_that_cuts_off_a_refresh_says_why_the_session_ended(
    open_page: Callable[..., Page], gateway: Client,
) -> None:
    """Two reloads in a row: the first page's refresh reaches auth (which rotates the token) but
    its answer is lost with the page; the second page holds only the spent token. Auth ends the
    sign-in, as a reused token must; the page says why instead of just showing the sign-in form."""
    user = sign_up(gateway)
    page = open_page(expected=(401,))
    sign_in(page, user.email, user.password)
    cut_off: list[Route] = []

    def rotate_and_hold(route: Route) -> None:
        if cut_off:  # the second page's refresh
            route.continue_()
            return
        route.fetch()  # auth rotates the token; the answer never reaches the page
        cut_off.append(route)

    # The route stays in place until the page holding the first refresh is gone: unrouted, a
    # request still held is sent on to auth, whose 401 would reach the first page after all.
    page.route("**/api/v1/auth/refresh", rotate_and_hold)
    page.reload(wait_until="commit")
    for _ in range(100):  # the handler runs while the page is being waited on
        if cut_off:
            break
        page.wait_for_timeout(100)
    assert cut_off, "the refresh never reached auth"
    page.reload()

    expect(page.get_by_role("heading", name="Sign in to TaskFlow")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("reloaded or lost its connection")


def test_a_task_added_whose_answer_was_lost_is_added_once(open_page: Callable[..., Page], gateway: Client) -> None:
    """Issue 21: the instance applied the create, then died before answering (the gateway's
    502). The page sends it again with the same Idempotency-Key, and the one task it made is
    the answer: no second task."""
    user = sign_up(gateway)
    page = open_page(expected=(502,))
    sign_in(page, user.email, user.password)
    keys: list[str | None] = []

    def apply_then_lose_the_answer(route: Route) -> None:
        keys.append(route.request.headers.get("idempotency-key"))
        if route.request.method != "POST" or len(keys) > 1:
            route.continue_()
            return
        route.fetch()  # the service creates the task
        route.fulfill(status=502, content_type="application/problem+json",
                      body='{"type":"about:blank","title":"Bad Gateway","status":502}')

    page.route("**/api/v1/tasks", apply_then_lose_the_answer)
    page.get_by_label("Title", exact=True).fill("Only once")
    page.get_by_role("button", name="Add task").click()
    expect(page.get_by_text("Added “Only once”.")).to_be_visible()
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
    listed = gateway.get("/api/v1/tasks", headers=user.headers).json()["items"]
    assert [task["title"] for task in listed] == ["Only once"]
