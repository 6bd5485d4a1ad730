"""Key listing at scale: keyset pagination over an index, page/size paging without OFFSET scans, cheap counts.

LiteLLM's `/key/list` went down at 380,000 keys (#19477): an OFFSET scan and an exact COUNT(*) per page.
Here a page is an index range seek from the previous page's last row — `(created_at, id)` for the REST
API's opaque cursor; LiteLLM's `page`/`size` seeks from the boundary of the page before, remembered in the
cache — and the total is exact only while it is small, else an estimate (PostgreSQL's `reltuples` for an
unfiltered table, a cached count for a filtered list). Every page costs the same number of queries
whatever the size of the table.
"""
from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Model, Q, QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from accessctl.errors import InvalidInput

DEFAULT_ORDERING = ("-created_at", "id")
EXACT_COUNT_BELOW = 10_000  # below this a list is counted exactly (a bounded scan); above, estimated
COUNT_CACHE_SECONDS = 60
BOUNDARY_CACHE_SECONDS = 600
BOUNDARY_LOOKBACK = 16  # how many earlier pages' boundaries a random page jump looks for


# --- orderings and seeks ----------------------------------------------------------------------


def ordering_of(queryset: QuerySet, default: Sequence[str] = DEFAULT_ORDERING) -> tuple[str, ...]:
    """The queryset's explicit ordering, else the model's, else `default`; "pk" spelled as the field name."""
    ordering = tuple(queryset.query.order_by) or tuple(queryset.model._meta.ordering or ()) or tuple(default)
    pk_name = queryset.model._meta.pk.name
    return tuple(o.replace("pk", pk_name) if o.lstrip("-") == "pk" else o for o in ordering)


def seekable(model: type[Model], ordering: Sequence[str]) -> bool:
    """Whether rows can be sought by these fields: local, non-null columns that end in a unique one."""
    fields = []
    for name in ordering:
        if not isinstance(name, str) or "__" in name or name.lstrip("-") in ("?", ""):
            return False
        try:
            field = model._meta.get_field(name.lstrip("-"))
        except Exception:  # noqa: BLE001 - an annotation or expression: not seekable
            return False
        if field.null or field.is_relation or not field.concrete:
            return False
        fields.append(field)
    return bool(fields) and (fields[-1].unique or fields[-1].primary_key)


def row_values(row: Model, ordering: Sequence[str]) -> tuple[Any, ...]:
    return tuple(getattr(row, name.lstrip("-")) for name in ordering)


def seek(queryset: QuerySet, ordering: Sequence[str], values: Sequence[Any], *, reverse: bool = False) -> QuerySet:
    """Rows strictly after `values` in `ordering` (or before them, with `reverse`), mixed directions allowed.

    `(a DESC, b ASC) after (x, y)` is `a <= x AND (a < x OR (a = x AND b > y))`: the leading range keeps
    the scan on the index of `a`; the rest resolves ties.
    """
    branches: list[Q] = []
    equal = Q()
    for name, value in zip(ordering, values, strict=True):
        field = name.lstrip("-")
        descending = name.startswith("-") != reverse
        branches.append(equal & Q(**{f"{field}__{'lt' if descending else 'gt'}": value}))
        equal &= Q(**{field: value})
    condition = functools.reduce(operator.or_, branches)
    first = ordering[0].lstrip("-")
    first_descending = ordering[0].startswith("-") != reverse
    leading = Q(**{f"{first}__{'lte' if first_descending else 'gte'}": values[0]})
    return queryset.filter(leading & condition)


def _reversed(ordering: Sequence[str]) -> tuple[str, ...]:
    return tuple(name[1:] if name.startswith("-") else f"-{name}" for name in ordering)


# --- cursors ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def encode_cursor(values: Sequence[Any], *, reverse: bool = False) -> str:
    """An opaque cursor: the boundary row's sort values (never anything secret: dates and ids)."""
    payload = json.dumps({"v": [_jsonable(v) for v in values], "r": reverse}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(model: type[Model], ordering: Sequence[str], cursor: str) -> tuple[list[Any], bool]:
    """The values and direction of a cursor; a malformed or foreign cursor → 400 naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        raw, reverse = payload["v"], bool(payload.get("r"))
        if not isinstance(raw, list) or len(raw) != len(ordering):
            raise ValueError("wrong arity")
        values = [model._meta.get_field(n.lstrip("-")).to_python(v) for n, v in zip(ordering, raw, strict=True)]
    except Exception as exc:  # noqa: BLE001 - bad base64/JSON, wrong shape, or a field's to_python refusing a value
        raise InvalidInput("Invalid cursor: use the `next` or `previous` link of a page.", param="cursor") from exc
    return values, reverse


# --- counts -----------------------------------------------------------------------------------


def _fingerprint(queryset: QuerySet) -> str:
    """Identifies the list (its SQL with the tenant's filters), so cached boundaries and counts never mix."""
    try:
        # Only the WHERE matters; compiling just the primary key column is several times cheaper.
        sql, params = queryset.order_by().values_list("pk").query.sql_with_params()
    except EmptyResultSet:  # a filter that matches nothing by construction (e.g. `pk__in=[]`)
        sql, params = "empty", ()
    return hashlib.sha256(f"{queryset.model._meta.label}|{queryset.db}|{sql}|{params!r}".encode()).hexdigest()[:32]


def estimated_count(queryset: QuerySet, *, exact_below: int = EXACT_COUNT_BELOW) -> int:
    """The number of rows: exact while under `exact_below` (a bounded scan), else an estimate.

    One query per call: on PostgreSQL an unfiltered table answers from `pg_class.reltuples` (kept by
    ANALYZE/autovacuum) in the same statement as the bounded count. A large filtered list is counted
    exactly once per minute and cached.
    """
    queryset = queryset.order_by()
    connection = connections[queryset.db]
    unfiltered = not queryset.query.where and not queryset.query.combinator
    if connection.vendor == "postgresql" and unfiltered:
        table = queryset.model._meta.db_table
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT CASE WHEN c.reltuples >= %s THEN c.reltuples::bigint "
                f"ELSE (SELECT count(*) FROM (SELECT 1 FROM {qn(table)} LIMIT %s) s) END "
                "FROM pg_class c WHERE c.oid = %s::regclass",
                [exact_below, exact_below + 1, qn(table)],
            )
            return int(cursor.fetchone()[0])
    bounded = queryset.values("pk")[: exact_below + 1].count()
    if bounded <= exact_below:
        return bounded
    key = f"pagination:count:{_fingerprint(queryset)}"
    count = cache.get(key)
    if count is None:
        count = queryset.count()
        cache.set(key, count, COUNT_CACHE_SECONDS)
    return count


# --- LiteLLM's page/size ----------------------------------------------------------------------


@dataclass
class Page:
    rows: list[Model]
    total: int
    page: int
    size: int

    @property
    def total_pages(self) -> int:
        return -(-self.total // self.size) if self.total else 0


def _boundary_key(fingerprint: str, size: int, page: int) -> str:
    return f"pagination:boundary:{fingerprint}:{size}:{page}"


def page_slice(queryset: QuerySet, *, page: int, size: int, count: bool = True) -> Page:
    """Page `page` (from 1) of `size` rows, for `?page=&size=` APIs such as LiteLLM's `/key/list`.

    Page 1 reads from the start of the index. Page N seeks from the last row of page N-1, remembered in the
    cache when that page was served, so walking the pages in order never scans an OFFSET; a jump reuses the
    nearest earlier boundary it finds and offsets only from there. Orderings that cannot be sought (nullable
    or non-unique columns) fall back to OFFSET.
    """
    if page < 1 or size < 1:
        raise InvalidInput("page and size must be positive.", param="page" if page < 1 else "size")
    ordering = ordering_of(queryset)
    queryset = queryset.order_by(*ordering)
    total = estimated_count(queryset) if count else 0
    if not seekable(queryset.model, ordering):
        rows = list(queryset[(page - 1) * size : page * size])
        return Page(rows, total, page, size)
    fingerprint = _fingerprint(queryset)
    start, skip = queryset, (page - 1) * size
    if page > 1:
        earlier = list(range(page - 1, max(0, page - 1 - BOUNDARY_LOOKBACK), -1))
        found = cache.get_many([_boundary_key(fingerprint, size, p) for p in earlier])
        for p in earlier:
            values = found.get(_boundary_key(fingerprint, size, p))
            if values is not None:
                start, skip = seek(queryset, ordering, values), (page - 1 - p) * size
                break
    rows = list(start[skip : skip + size])
    if rows:
        cache.set(_boundary_key(fingerprint, size, page), row_values(rows[-1], ordering), BOUNDARY_CACHE_SECONDS)
    return Page(rows, total, page, size)


# --- the REST API's cursor pagination ---------------------------------------------------------


class KeysetPagination(BasePagination):
    """`{"count", "next", "previous", "results"}` with opaque cursors over `(created_at, id)`.

    `count` is exact for small lists and an estimate for large ones (see `estimated_count`). A page costs
    two queries — the count and the page (with its related rows joined) — at any depth and table size.
    """

    page_size = 50
    max_page_size = 500
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    ordering: tuple[str, ...] = DEFAULT_ORDERING
    related: tuple[str, ...] = ()  # joined per page when the view's queryset does not already say so

    def paginate_queryset(self, queryset: QuerySet, request: Any, view: Any = None) -> list[Model]:
        self.request = request
        self.page_size = self._page_size(request)
        ordering = self.ordering if seekable(queryset.model, self.ordering) else ordering_of(queryset)
        if not seekable(queryset.model, ordering):
            raise TypeError(f"{queryset.model.__name__} ordering {ordering} cannot be sought; end it with a unique "
                            "non-null field, e.g. ('-created_at', 'id').")
        self.ordering_used = ordering
        if self.related and not queryset.query.select_related:
            queryset = queryset.select_related(*self.related)
        self.count = estimated_count(queryset)
        cursor = request.query_params.get(self.cursor_query_param)
        reverse = False
        qs = queryset.order_by(*ordering)
        if cursor:
            values, reverse = decode_cursor(queryset.model, ordering, cursor)
            qs = seek(queryset.order_by(*(_reversed(ordering) if reverse else ordering)), ordering, values,
                      reverse=reverse)
        rows = list(qs[: self.page_size + 1])
        more = len(rows) > self.page_size
        rows = rows[: self.page_size]
        if reverse:
            rows.reverse()
        self.has_next = more if not reverse else True
        self.has_previous = bool(cursor) and (more if reverse else True)
        self.rows = rows
        return rows

    def _page_size(self, request: Any) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError as exc:
            raise InvalidInput("page_size must be a whole number.", param="page_size") from exc
        if not 1 <= size <= self.max_page_size:
            raise InvalidInput(f"page_size must be between 1 and {self.max_page_size}.", param="page_size")
        return size

    def _link(self, values: Sequence[Any], reverse: bool) -> str:
        params = {k: v for k, v in self.request.query_params.items() if k != self.cursor_query_param}
        params[self.cursor_query_param] = encode_cursor(values, reverse=reverse)
        return self.request.build_absolute_uri(self.request.path) + "?" + urlencode(params)

    def get_next_link(self) -> str | None:
        if not self.rows or not self.has_next:
            return None
        return self._link(row_values(self.rows[-1], self.ordering_used), reverse=False)

    def get_previous_link(self) -> str | None:
        if not self.rows or not self.has_previous:
            return None
        return self._link(row_values(self.rows[0], self.ordering_used), reverse=True)

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"count": self.count, "next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer", "description": "Exact for small lists, an estimate for large ones."},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict]:
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "The `next` or `previous` link's cursor.", "schema": {"type": "string"}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Rows per page (1-{self.max_page_size}).", "schema": {"type": "integer"}},
        ]
