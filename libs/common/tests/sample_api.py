"""A small API declared like a service's, used to test the shared request handling."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from taskflow_common.api import Api, Link, QueryParameters, RequestBody
from taskflow_common.tokens import Principal

sample_api = Api("sample", "/api/v1/sample", title="Sample", description="Exercises the shared library.")


class ItemIn(RequestBody):
    title: str = Field(min_length=1, max_length=20)
    size: int = Field(default=1, ge=1)


class ItemOut(BaseModel):
    title: str
    size: int
    owner: str


class Filters(QueryParameters):
    status: Literal["open", "closed"] | None = None
    limit: int = Field(default=20, ge=1, le=100)


class Echo(BaseModel):
    status: str | None
    limit: int


@sample_api.post("/items", summary="Create an item", body=ItemIn, response=ItemOut, status=201,
                 response_headers=("Location",), links={"GetItem": Link("get_item", {"item_id": "$response.body#/title"})})
def create_item(body: ItemIn, principal: Principal) -> tuple[ItemOut, dict[str, str]]:
    """Echo the validated body back as the caller's item."""
    item = ItemOut(title=body.title, size=body.size, owner=principal.user_id)
    return item, {"Location": "/api/v1/sample/items/1"}


@sample_api.get("/items", summary="Echo the filters", query=Filters, response=Echo)
def list_items(query: Filters) -> Echo:
    """Echo the validated query back."""
    return Echo(status=query.status, limit=query.limit)


@sample_api.get("/items/<item_id>", summary="One item", response=ItemOut, errors=(404,))
def get_item(item_id: str, principal: Principal) -> ItemOut:
    """The item named ``item_id``, owned by the caller."""
    return ItemOut(title=item_id, size=1, owner=principal.user_id)


@sample_api.get("/admin-only", summary="Admins only", access="admin", status=204)
def admin_only() -> None:
    """Nothing, for admins."""


@sample_api.get("/public", summary="Anyone", access="public", response=Echo)
def public() -> Echo:
    """Reachable without a token."""
    return Echo(status=None, limit=0)


@sample_api.get("/boom", summary="Fails", access="public")
def boom() -> None:
    """An unexpected error inside a view."""
    raise RuntimeError("secret internals must not leak")
