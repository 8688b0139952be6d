"""Timestamps as DESIGN §3 has them: RFC 3339 date-times with an offset or ``Z``, nothing else.

pydantic alone would also take a Unix time (``since=0.5`` is 1970-01-01T00:00:00.5Z), a space
for the ``T`` and a time without seconds; none of those is the ``date-time`` of RFC 3339 §5.6
that the OpenAPI document promises, so :data:`Timestamp` refuses them before pydantic parses.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, str) and not RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T09:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
"""An aware datetime given as RFC 3339 text (``format: date-time``); a datetime object passes as is."""
