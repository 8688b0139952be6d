"""Lists, paginated the same way everywhere (DESIGN §3): ``?page=1&limit=20`` with ``limit``
1..100 (out of range is 422) → ``{"items": [...], "total": N, "page": P, "limit": L}``."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from .api import QueryParameters

Item = TypeVar("Item", bound=BaseModel)


class PageQuery(QueryParameters):
    """``page`` (from 1) and ``limit`` (1..100, default 20); extend it with a list's filters."""

    page: int = Field(default=1, ge=1, le=1_000_000)
    limit: int = Field(default=20, ge=1, le=100)

    @property
    def skip(self) -> int:
        """Items before this page."""
        return (self.page - 1) * self.limit


class Page(BaseModel, Generic[Item]):
    """One page of a list and the size of the whole list."""

    items: list[Item]
    total: int
    page: int
    limit: int
