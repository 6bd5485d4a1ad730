"""A scratch LiteLLM database: LiteLLM's own schema (the Prisma migrations `litellm-proxy-extras` ships, applied
in order), and rows written as LiteLLM's management endpoints write them. Used by the import tests and
`benchmarks/bench_import.py`; it needs only the machine's PostgreSQL (127.0.0.1:5432, user postgres).
"""
from __future__ import annotations

import datetime
import hashlib
import importlib.resources
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

PG_ADMIN_URL = os.environ.get("LITELLM_IMPORT_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = "litellm_import_src_"


def migration_files() -> list[Path]:
    """LiteLLM's migrations in the order Prisma applies them (their directory names start with a timestamp)."""
    root = Path(str(importlib.resources.files("litellm_proxy_extras") / "migrations"))
    return [d / "migration.sql" for d in sorted(root.iterdir()) if (d / "migration.sql").is_file()]


def database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


def create_database(*, template: str | None = None) -> str:
    """A new empty database `litellm_import_src_<random>` (a copy of `template` if named); its name."""
    name = f"{DB_PREFIX}{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_database(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def apply_migrations(url: str) -> int:
    """Apply every LiteLLM migration to the database at `url`; returns how many."""
    files = migration_files()
    with psycopg.connect(url, autocommit=True) as conn:
        for path in files:
            conn.execute(path.read_text(encoding="utf-8"))
    return len(files)


@contextmanager
def litellm_schema_template() -> Iterator[str]:
    """A database holding LiteLLM's migrated, empty schema, for `CREATE DATABASE … TEMPLATE`; dropped after."""
    name = create_database()
    try:
        apply_migrations(database_url(name))
        yield name
    finally:
        drop_database(name)


@contextmanager
def scratch_litellm_database(template: str) -> Iterator[str]:
    """A fresh copy of the migrated LiteLLM schema; its URL. Dropped afterwards."""
    name = create_database(template=template)
    try:
        yield database_url(name)
    finally:
        drop_database(name)


def sha256_token(secret: str) -> str:
    """LiteLLM's `hash_token`: SHA-256 hex of the `sk-` secret, what it stores in `token`."""
    return hashlib.sha256(secret.encode()).hexdigest()


def abbreviated(secret: str) -> str:
    """LiteLLM's `key_name` for a secret: `sk-...` and its last four characters."""
    return f"sk-...{secret[-4:]}"


NOW = datetime.datetime(2026, 5, 4, 12, 0, 0)  # Prisma stores UTC without a zone


class LiteLLMRows:
    """Inserts rows as LiteLLM's management endpoints write them (`/organization/new`, `/team/new`,
    `/team/member_add`, `/key/generate`, …) and as its spend tracker updates them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def insert(self, table: str, **values: Any) -> None:
        values = {k: Jsonb(v) if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict))
                  else v for k, v in values.items()}
        columns = ", ".join(f'"{c}"' for c in values)
        marks = ", ".join(["%s"] * len(values))
        self.conn.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', list(values.values()))

    def execute(self, query: str, params: Any = None) -> None:
        self.conn.execute(query, params)

    def budget(self, *, max_budget: float | None = None, soft_budget: float | None = None, tpm_limit: int | None = None,
               rpm_limit: int | None = None, budget_duration: str | None = None, budget_id: str | None = None,
               **extra: Any) -> str:
        budget_id = budget_id or str(uuid.uuid4())
        self.insert("LiteLLM_BudgetTable", budget_id=budget_id, max_budget=max_budget, soft_budget=soft_budget,
                    tpm_limit=tpm_limit, rpm_limit=rpm_limit, budget_duration=budget_duration,
                    budget_reset_at=NOW + datetime.timedelta(days=30) if budget_duration else None,
                    created_by="default_user_id", updated_by="default_user_id", created_at=NOW, updated_at=NOW,
                    **extra)
        return budget_id

    def organization(self, organization_id: str, alias: str, *, budget_id: str, models: list[str] | None = None,
                     spend: float = 0.0, **extra: Any) -> None:
        self.insert("LiteLLM_OrganizationTable", organization_id=organization_id, organization_alias=alias,
                    budget_id=budget_id, models=models or [], spend=spend, metadata={}, model_spend={},
                    created_by="default_user_id", updated_by="default_user_id", created_at=NOW, updated_at=NOW,
                    **extra)

    def user(self, user_id: str, *, email: str | None = None, role: str = "internal_user",
             models: list[str] | None = None, max_budget: float | None = None, spend: float = 0.0,
             teams: list[str] | None = None, **extra: Any) -> None:
        self.insert("LiteLLM_UserTable", user_id=user_id, user_email=email, user_role=role, models=models or [],
                    max_budget=max_budget, spend=spend, teams=teams or [], metadata={}, model_spend={},
                    model_max_budget={}, created_at=NOW, updated_at=NOW, **extra)

    def team(self, team_id: str, alias: str, *, organization_id: str | None = None, models: list[str] | None = None,
             members_with_roles: list[dict[str, Any]] | None = None, team_member_permissions: list[str] | None = None,
             max_budget: float | None = None, spend: float = 0.0, admins: list[str] | None = None,
             access_group_ids: list[str] | None = None, **extra: Any) -> None:
        members = members_with_roles or []
        self.insert("LiteLLM_TeamTable", team_id=team_id, team_alias=alias, organization_id=organization_id,
                    admins=admins or [], members=[],
                    members_with_roles=Jsonb(members) if members else Jsonb({}),
                    metadata={}, models=models or [], max_budget=max_budget, spend=spend, blocked=False,
                    model_spend={}, model_max_budget={}, team_member_permissions=team_member_permissions or [],
                    access_group_ids=access_group_ids or [], created_at=NOW, updated_at=NOW, **extra)

    def team_membership(self, team_id: str, user_id: str, *, spend: float = 0.0, budget_id: str | None = None) -> None:
        """LiteLLM_TeamMembership: the member's spend and budget inside the team (`/team/member_add` with
        `max_budget_in_team`, and the spend tracker)."""
        self.insert("LiteLLM_TeamMembership", team_id=team_id, user_id=user_id, spend=spend, budget_id=budget_id)

    def organization_membership(self, organization_id: str, user_id: str, *, role: str = "internal_user",
                                spend: float = 0.0, budget_id: str | None = None) -> None:
        self.insert("LiteLLM_OrganizationMembership", organization_id=organization_id, user_id=user_id,
                    user_role=role, spend=spend, budget_id=budget_id, created_at=NOW, updated_at=NOW)

    def key(self, secret: str, *, user_id: str | None = None, team_id: str | None = None,
            organization_id: str | None = None, models: list[str] | None = None, key_alias: str | None = None,
            spend: float = 0.0, max_budget: float | None = None, **extra: Any) -> str:
        """`/key/generate`: the token is `hash_token(secret)`; the secret itself is never stored."""
        token = sha256_token(secret)
        defaults = {"metadata": {}, "aliases": {}, "config": {}, "permissions": {}, "model_spend": {},
                    "model_max_budget": {}, "created_by": "default_user_id", "updated_by": "default_user_id",
                    "created_at": NOW, "updated_at": NOW}
        self.insert("LiteLLM_VerificationToken", token=token, key_name=abbreviated(secret), key_alias=key_alias,
                    user_id=user_id, team_id=team_id, organization_id=organization_id, models=models or [],
                    spend=spend, max_budget=max_budget, **(defaults | extra))
        return token

    def access_group(self, access_group_id: str, name: str, *, models: list[str] | None = None,
                     mcp_servers: list[str] | None = None, **extra: Any) -> None:
        self.insert("LiteLLM_AccessGroupTable", access_group_id=access_group_id, access_group_name=name,
                    access_model_names=models or [], access_mcp_server_ids=mcp_servers or [],
                    created_at=NOW, updated_at=NOW, created_by="default_user_id", updated_by="default_user_id",
                    **extra)

    def proxy_model(self, model_name: str, *, blocked: bool = False) -> None:
        """`/model/new`: LiteLLM encrypts `litellm_params`; only the model name is readable."""
        self.insert("LiteLLM_ProxyModelTable", model_id=str(uuid.uuid4()), model_name=model_name,
                    litellm_params={"model": "encrypted-value"}, model_info={}, blocked=blocked,
                    created_by="default_user_id", updated_by="default_user_id", created_at=NOW, updated_at=NOW)
