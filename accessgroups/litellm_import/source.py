"""Reading a LiteLLM deployment's PostgreSQL database: read-only, one consistent snapshot, in batches.

LiteLLM's schema changes from release to release (Prisma migrations add columns), so each table is read
with the columns it has; a column a release lacks reads as missing (None), a table it lacks as empty.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

# Query parameters of Prisma's DATABASE_URL that libpq does not know; `schema` names the tables' schema.
PRISMA_ONLY_PARAMS = frozenset(
    {"schema", "connection_limit", "pool_timeout", "pgbouncer", "statement_cache_size", "socket_timeout"}
)
CONNECT_TIMEOUT_SECONDS = 10


class SourceError(Exception):
    """The LiteLLM database cannot be read (unreachable, not LiteLLM's schema): a message for the operator."""


def masked_url(url: str) -> str:
    """The URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_source_url(url: str) -> tuple[str, str | None]:
    """(libpq URL, schema) from a LiteLLM DATABASE_URL: Prisma's own parameters are taken out."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SourceError(
            f"The LiteLLM database must be a postgres:// URL (LiteLLM's DATABASE_URL), not {masked_url(url)!r}."
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for name, value in query if name == "schema" and value), None)
    kept = [(name, value) for name, value in query if name not in PRISMA_ONLY_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(kept))), schema


class LiteLLMSource:
    """A read-only connection to LiteLLM's database, in one REPEATABLE READ transaction, so every table is
    read as of the same moment even while LiteLLM keeps serving."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = url
        self.conninfo, url_schema = parse_source_url(url)
        self.schema = schema or url_schema or "public"
        self._conn: psycopg.Connection | None = None
        self._columns: dict[str, list[str]] = {}

    def __enter__(self) -> LiteLLMSource:
        try:
            conn = psycopg.connect(self.conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, row_factory=dict_row)
        except psycopg.Error as exc:
            raise SourceError(f"Cannot connect to the LiteLLM database {masked_url(self.url)}: {_first_line(exc)}") from exc
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._conn = conn
        try:
            rows = conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
                "ORDER BY table_name, ordinal_position",
                (self.schema,),
            ).fetchall()
        except psycopg.Error as exc:
            self.close()
            raise SourceError(f"Cannot read the LiteLLM database's schema: {_first_line(exc)}") from exc
        for row in rows:
            self._columns.setdefault(row["table_name"], []).append(row["column_name"])
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def has(self, table: str) -> bool:
        return table in self._columns

    def require(self, *tables: str) -> None:
        missing = [t for t in tables if t not in self._columns]
        if missing:
            raise SourceError(
                f"{masked_url(self.url)} (schema {self.schema!r}) is not a LiteLLM database: "
                f"no table {', '.join(missing)}. Pass the database LiteLLM's DATABASE_URL names "
                "(and --schema if it is not public)."
            )

    def count(self, table: str) -> int:
        if not self.has(table):
            return 0
        query = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(self.schema, table))
        return self._execute(query).fetchone()["n"]

    def rows(
        self, table: str, columns: Sequence[str], *, order_by: Sequence[str], batch_size: int,
        flags: Sequence[str] = (),
    ) -> Iterator[list[dict[str, Any]]]:
        """Batches of rows as dicts with every column of `columns` (None where this release lacks it), and
        each column of `flags` as a boolean: whether it holds a setting (not null, empty, false or 0); the
        import only reports those, so they are not transferred and decoded."""
        if not self.has(table):
            return
        present = [c for c in columns if c in self._columns[table]]
        present_flags = [c for c in flags if c in self._columns[table]]
        absent = dict.fromkeys(c for c in (*columns, *flags) if c not in self._columns[table])
        order = [c for c in order_by if c in self._columns[table]]
        selected = [sql.Identifier(c) for c in present] + [
            sql.SQL("({0} IS NOT NULL AND {0}::text NOT IN ('', '{{}}', '[]', 'null', 'false', '0')) AS {0}").format(
                sql.Identifier(c)
            )
            for c in present_flags
        ]
        query = sql.SQL("SELECT {} FROM {}{}").format(
            sql.SQL(", ").join(selected),
            sql.Identifier(self.schema, table),
            sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(sql.Identifier(c) for c in order)) if order else sql.SQL(""),
        )
        assert self._conn is not None
        try:
            with self._conn.cursor(name=f"import_{table.lower()}") as cursor:
                cursor.itersize = batch_size
                cursor.execute(query)
                while batch := cursor.fetchmany(batch_size):
                    yield [{**absent, **row} for row in batch]
        except psycopg.Error as exc:
            raise SourceError(f"Cannot read {table}: {_first_line(exc)}") from exc

    def _execute(self, query: sql.Composable) -> psycopg.Cursor:
        assert self._conn is not None
        try:
            return self._conn.execute(query)
        except psycopg.Error as exc:
            raise SourceError(f"Cannot read the LiteLLM database: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
