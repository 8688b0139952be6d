"""Who may check a password now: sign-in throttling with device cookies (OWASP Authentication
Cheat Sheet, "Slow down online guessing attacks with device cookies"; DESIGN §4 auth).

A device that signed in to an account before (its cookie names it; :class:`~.store.Devices`)
tries that account's password on a budget of its own. Every other attempt spends the account's
budget for unknown devices and its client address's. An attacker guessing from anywhere so
exhausts only budgets that the owner's known devices never spend: the owner keeps signing in from
them, while the right password from an unknown device stays throttled. Budgets are reserved
before the password is checked (:class:`~.store.AttemptBudgets`), so parallel attempts check at
most the budget.

Device tokens are only ever made here: a sign-in from a device unknown to the account gets a new
token, never the one it presented (a token planted in a browser is not adopted). A request may
carry several device cookies (one planted under a longer path comes first); any of them known to
the account makes the device known. A password change, logout-all and deactivation forget every
device of the account, so devices made with an old password buy no guesses at the new one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LoginThrottled
from .settings import AuthSettings
from .store import AttemptBudgets, Devices

DEVICE_COOKIE = "taskflow_device"
"""The cookie that names a device: HttpOnly, SameSite=Strict, path ``/api/v1/auth``."""

_DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def device_tokens(cookies: Sequence[str]) -> tuple[str, ...]:
    """The device tokens among a request's ``taskflow_device`` cookie values (malformed ones are
    ignored)."""
    return tuple(cookie for cookie in cookies if _DEVICE_TOKEN.fullmatch(cookie))


def _device_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Attempt:
    """The budgets one password check reserved (keys of :class:`~.store.AttemptBudgets`); for a
    device known to the account, its token and its budget's key."""

    keys: tuple[str, ...]
    device: str | None = None
    device_key: str | None = None


class SignInThrottle:
    """Reserves the budgets of password checks and remembers the devices that signed in.

    Args:
        failures: the budget counters.
        devices: the devices known to accounts.
        settings: the budgets (``login_max_failures_per_*``) and the window.
    """

    def __init__(self, failures: AttemptBudgets, devices: Devices, settings: AuthSettings) -> None:
        self.failures = failures
        self.devices = devices
        self.settings = settings

    def attempt(self, email: str, client: str, devices: Sequence[str]) -> Attempt:
        """Reserve one password check of the account of ``email`` (which need not exist).

        Args:
            email: the account's normalised email.
            client: the caller's address.
            devices: the tokens of the caller's device cookies (see :func:`device_tokens`).

        Raises:
            LoginThrottled: a budget this attempt would spend is exhausted in its window.
        """
        device = next((token for token in devices if self.devices.known(_device_hash(token), email)), None)
        if device is not None:
            device_key = f"device:{_device_hash(device)}:{email}"
            budgets = [(device_key, self.settings.login_max_failures_per_device)]
        else:
            device_key = None
            budgets = [
                (f"account:{email}", self.settings.login_max_failures_per_account),
                (f"client:{client}", self.settings.login_max_failures_per_client),
            ]
        reserved: list[str] = []
        for key, limit in budgets:
            wait = self.failures.reserve(key, limit)
            if wait is not None:
                for spent in reserved:
                    self.failures.release(spent)
                raise LoginThrottled(wait)
            reserved.append(key)
        return Attempt(tuple(reserved), device, device_key)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: give the reservations back and forget a known device's
        failures (an unknown devices' budget keeps its failures until its window ends)."""
        for key in attempt.keys:
            self.failures.release(key)
        if attempt.device_key is not None:
            self.failures.reset(attempt.device_key)

    def remember(self, email: str, attempt: Attempt | None = None) -> str:
        """Record that the caller's device signed in to the account of ``email``.

        Args:
            attempt: the sign-in's attempt; None for a new account.

        Returns:
            the device's token for its cookie: the known device's own, or a new one (256 random
            bits) for a device the account did not know.
        """
        token = attempt.device if attempt is not None and attempt.device else secrets.token_urlsafe(32)
        self.devices.remember(_device_hash(token), email)
        return token

    def forget(self, email: str) -> None:
        """Every device of the account is unknown again (a password change, logout-all or
        deactivation)."""
        self.devices.forget(email)
