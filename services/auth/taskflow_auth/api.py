"""Routes of the auth service under ``/api/v1/auth`` (DESIGN §4): parse → authorize → domain → respond."""

from __future__ import annotations

from taskflow_common.api import Api

api = Api("auth", "/api/v1/auth", title="TaskFlow auth", description="Accounts, credentials and the tokens every other service trusts (DESIGN §4 auth).")
