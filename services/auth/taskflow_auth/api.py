"""Public routes of the auth service under ``/api/v1/auth`` (DESIGN §4 auth), reached through
the gateway: parse → authorize → call :class:`~.accounts.Accounts` → respond."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request
from taskflow_common.api import Api, Link
from taskflow_common.settings import Environment
from taskflow_common.tokens import Principal
from werkzeug.http import dump_cookie

from .accounts import Accounts, Session
from .schemas import (
    ChangePasswordRequest,
    JsonWebKeySet,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UpdateMeRequest,
    User,
    VerifyEmailRequest,
)
from .throttling import DEVICE_COOKIE, device_tokens

api = Api(
    "auth",
    "/api/v1/auth",
    title="TaskFlow auth",
    description="Accounts, credentials and the tokens every other service trusts (DESIGN §4 auth).",
)


def accounts() -> Accounts:
    return current_app.extensions["taskflow_auth.accounts"]


def token_response(session: Session) -> TokenResponse:
    return TokenResponse(
        user=User.from_document(session.user),
        access_token=session.access_token,
        refresh_token=session.refresh_token,
        expires_in=session.expires_in,
    )


NO_STORE = {"Cache-Control": "no-store"}  # RFC 6749 §5.1: token responses must not be cached


def caller_devices() -> tuple[str, ...]:
    """The tokens of the caller's device cookies (see :mod:`.throttling`)."""
    return device_tokens(request.cookies.getlist(DEVICE_COOKIE))


def signed_in(session: Session) -> dict[str, str]:
    """The headers of a sign-in's response: no caching, and the device cookie (RFC 6265bis:
    HttpOnly, SameSite=Strict, sent only to the auth routes; Secure over HTTPS and in production)."""
    settings = accounts().settings
    cookie = dump_cookie(
        DEVICE_COOKIE,
        session.device or "",
        max_age=settings.device_cookie_ttl,
        path=api.url_prefix,
        secure=request.is_secure or settings.taskflow_env is Environment.PRODUCTION,
        httponly=True,
        samesite="Strict",
    )
    return {**NO_STORE, "Set-Cookie": cookie}


REFRESH_TOKEN = {"refresh_token": "$response.body#/refresh_token"}
TOKEN_LINKS = {
    "Refresh": Link("refresh", request_body=REFRESH_TOKEN, description="Rotate the refresh token just issued."),
    "Logout": Link("logout", request_body=REFRESH_TOKEN, description="Revoke the refresh token just issued."),
}


@api.post("/register", summary="Create an account", body=RegisterRequest, response=TokenResponse, status=201,
          access="public", errors=(409,), response_headers=("Cache-Control", "Set-Cookie"), links=TOKEN_LINKS)
def register(body: RegisterRequest) -> tuple[TokenResponse, dict[str, str]]:
    """Anyone. Creates a ``user`` account (never an admin) and signs it in; the device becomes
    known to it (the ``taskflow_device`` cookie)."""
    session = accounts().register(body.email, body.password, body.name)
    return token_response(session), signed_in(session)


@api.post("/login", summary="Sign in", body=LoginRequest, response=TokenResponse, access="public", errors=(401, 403),
          response_headers=("Cache-Control", "Set-Cookie"), links=TOKEN_LINKS)
def login(body: LoginRequest) -> tuple[TokenResponse, dict[str, str]]:
    """Anyone. One answer for a wrong email or password (401); 429 once the attempt's budget is
    spent: the device's own when its ``taskflow_device`` cookie is known to the account, else
    the account's for unknown devices and the client address's."""
    session = accounts().login(body.email, body.password, request.remote_addr or "unknown", caller_devices())
    return token_response(session), signed_in(session)


@api.post("/refresh", summary="Rotate a refresh token", body=RefreshRequest, response=TokenResponse, access="public",
          errors=(401,), response_headers=("Cache-Control",), links=TOKEN_LINKS)
def refresh(body: RefreshRequest) -> tuple[TokenResponse, dict[str, str]]:
    """Holder of a refresh token. The token is spent; reusing it revokes its whole login family."""
    return token_response(accounts().refresh(body.refresh_token)), NO_STORE


@api.post("/logout", summary="Revoke a refresh token", body=RefreshRequest, status=204, access="public")
def logout(body: RefreshRequest) -> None:
    """Holder of a refresh token."""
    accounts().logout(body.refresh_token)


@api.post("/logout-all", summary="Revoke every refresh token of the caller", status=204)
def logout_all(principal: Principal) -> None:
    """The signed-in user."""
    accounts().logout_all(principal.user_id)


@api.get("/me", summary="The caller's account", response=User)
def me(principal: Principal) -> User:
    """The signed-in user."""
    return User.from_document(accounts().user(principal.user_id))


@api.patch("/me", summary="Change the caller's name", body=UpdateMeRequest, response=User)
def update_me(principal: Principal, body: UpdateMeRequest) -> User:
    """The signed-in user; only ``name`` can change here (role and activation are an admin's)."""
    return User.from_document(accounts().rename(principal.user_id, body.name))


@api.post("/password", summary="Change the caller's password", body=ChangePasswordRequest, status=204, errors=(403,))
def change_password(principal: Principal, body: ChangePasswordRequest) -> None:
    """The signed-in user, who must give the current password (a wrong one spends the budget a
    failed login would; 429 past it); every session ends."""
    accounts().change_password(
        principal.user_id, body.current_password, body.new_password, request.remote_addr or "unknown", caller_devices()
    )


@api.post("/verify-email", summary="Verify the account's email address", body=VerifyEmailRequest, status=204,
          access="public", errors=(404,))
def verify_email(body: VerifyEmailRequest) -> None:
    """Anyone holding a verification link (emailed at sign-up, or after a resend): its token
    marks the address verified and is spent. 404 when no open link has the token (invalid,
    expired, used or replaced by a newer one)."""
    accounts().verify_email(body.token)


@api.post("/verify-email/resend", summary="Email a new verification link", status=202, errors=(409,))
def resend_verification(principal: Principal) -> None:
    """The signed-in user, while the address is unverified (409 after); a few per hour (429
    past ``VERIFICATION_RESENDS_PER_HOUR``). Earlier links stop working."""
    accounts().resend_verification(principal.user_id)


@api.get("/jwks.json", summary="Public keys that verify access tokens", response=JsonWebKeySet, access="public",
         response_headers=("Cache-Control",))
def jwks() -> Response:
    """Anyone (RFC 7517). Cacheable for five minutes; keys are added before they are used."""
    response = jsonify(current_app.extensions["taskflow_auth.keys"].jwks)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
