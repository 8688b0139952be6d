"""What can go wrong in auth, as problem details (RFC 9457); raised by the domain, mapped once."""

from __future__ import annotations

from taskflow_common.problems import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized


class EmailTaken(Conflict):
    type = "urn:taskflow:problem:email-taken"
    title = "Email already registered"


class InvalidCredentials(Unauthorized):
    """One message for an unknown email and a wrong password, so neither is revealed."""

    def __init__(self) -> None:
        super().__init__("The email or password is incorrect.")


class InvalidRefreshToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__("The refresh token is invalid, expired or already used.")


class AccountDeactivated(Forbidden):
    type = "urn:taskflow:problem:account-deactivated"
    title = "Account deactivated"


class WrongCurrentPassword(Forbidden):
    type = "urn:taskflow:problem:wrong-password"
    title = "Current password is incorrect"


class LoginThrottled(TooManyRequests):
    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many failed logins; try again later.", retry_after=retry_after)


class UserNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such user.")


class LastActiveAdmin(Conflict):
    type = "urn:taskflow:problem:last-active-admin"
    title = "Last active admin"

    def __init__(self) -> None:
        super().__init__("The last active admin cannot be demoted or deactivated.")


class InvalidVerificationLink(NotFound):
    """One answer (404: no open link has the token) for a link that is malformed, unknown,
    already used, replaced or expired."""

    type = "urn:taskflow:problem:invalid-verification-link"
    title = "Invalid verification link"

    def __init__(self) -> None:
        super().__init__("The verification link is invalid, expired or already used; ask for a new one.")


class EmailAlreadyVerified(Conflict):
    type = "urn:taskflow:problem:email-already-verified"
    title = "Email already verified"

    def __init__(self) -> None:
        super().__init__("This account's email address is already verified.")


class VerificationThrottled(TooManyRequests):
    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many verification emails asked for; try again later.", retry_after=retry_after)
