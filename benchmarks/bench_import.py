"""manage.py import_litellm at scale (`make bench-import`): 100,000 keys in LiteLLM's real schema.

A scratch LiteLLM database (`litellm_import_src_<random>`, LiteLLM's migrations from litellm-proxy-extras,
dropped afterwards) is seeded in SQL with 4 organizations, 1,000 users, 100 teams of 10 members, their
memberships, one access group and 100,000 keys (sha256 tokens of `sk-bench-<n>`, as LiteLLM writes them).
The command is then run as an operator runs it, into a fresh accessctl database on PostgreSQL
(`accessctl_bench_import`, or $BENCH_IMPORT_DB; dropped and recreated) and into a fresh SQLite file:
the first run (everything created), a second run (nothing to write), and a dry run. It prints rows by
table, wall seconds, and the command's own CPU seconds (the database servers' CPU is not in it).

Target: the first run of 100,000 keys well under a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.litellm_import.litellm_db import (  # noqa: E402
    PG_ADMIN_URL,
    apply_migrations,
    create_database,
    database_url,
    drop_database,
)

TARGET_DB = os.environ.get("BENCH_IMPORT_DB", "accessctl_bench_import")
TARGET_SECONDS = 60.0
PYTHON = sys.executable


def seed(url: str, keys: int) -> None:
    """LiteLLM's rows, written in bulk SQL in the shapes its endpoints write."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, tpm_limit, budget_duration, created_by, updated_by)
            SELECT 'budget-org-' || o, 1000.0 * (o + 1), 100000, '30d', 'default_user_id', 'default_user_id'
            FROM generate_series(0, 3) o;
            INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, models, spend,
                                                      created_by, updated_by)
            SELECT 'org-' || o, 'Organization ' || o, 'budget-org-' || o, '{}', 10.0 * o, 'default_user_id',
                   'default_user_id'
            FROM generate_series(0, 3) o;
            INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, spend, teams)
            SELECT 'user-' || u || '@bench.test', 'user-' || u || '@bench.test', 'internal_user', '{}', u * 0.01,
                   ARRAY['team-' || (u % 100)]
            FROM generate_series(0, 999) u;
            INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend)
            SELECT 'user-' || u || '@bench.test', 'org-' || (u % 100 % 4),
                   CASE WHEN u < 4 THEN 'org_admin' ELSE 'internal_user' END, 0.0
            FROM generate_series(0, 999) u;
            INSERT INTO "LiteLLM_AccessGroupTable" (access_group_id, access_group_name, access_model_names, updated_at)
            VALUES ('ag-bench-1', 'bench-claude', ARRAY['anthropic/claude-3-5-sonnet'], now());
            INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, organization_id, admins, members, members_with_roles,
                                             models, max_budget, spend, team_member_permissions, access_group_ids)
            SELECT 'team-' || t, 'Team ' || t, 'org-' || (t % 4), '{}', '{}',
                   (SELECT jsonb_agg(jsonb_build_object(
                       'role', CASE WHEN m = 0 THEN 'admin' ELSE 'user' END,
                       'user_id', 'user-' || (t + 100 * m) || '@bench.test', 'user_email', NULL))
                    FROM generate_series(0, 9) m),
                   ARRAY['openai/gpt-4o', 'openai/gpt-4o-mini'], 500.0, t * 1.5, ARRAY['/key/generate'], '{}'
            FROM generate_series(0, 99) t;
            INSERT INTO "LiteLLM_TeamMembership" (user_id, team_id, spend)
            SELECT 'user-' || (t + 100 * m) || '@bench.test', 'team-' || t, m * 0.5
            FROM generate_series(0, 99) t, generate_series(0, 9) m;
            INSERT INTO "LiteLLM_ProxyModelTable" (model_id, model_name, litellm_params, created_by, updated_by)
            SELECT gen_random_uuid()::text, name, '{}', 'default_user_id', 'default_user_id'
            FROM unnest(ARRAY['openai/gpt-4o', 'openai/gpt-4o-mini', 'anthropic/claude-3-5-sonnet']) name;
        """)
        conn.execute("""
            INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, spend, models, user_id, team_id,
                organization_id, max_budget, metadata, access_group_ids, created_by, updated_by, created_at)
            SELECT encode(sha256(convert_to('sk-bench-' || k, 'UTF8')), 'hex'),
                   'sk-...' || right('sk-bench-' || k, 4), 'bench-key-' || k, (k %% 97) * 0.01,
                   CASE WHEN k %% 3 = 0 THEN ARRAY['openai/gpt-4o'] ELSE '{}' END,
                   'user-' || (k %% 1000) || '@bench.test',
                   CASE WHEN k %% 10 = 0 THEN NULL ELSE 'team-' || (k %% 1000 %% 100) END,
                   CASE WHEN k %% 10 = 0 THEN NULL ELSE 'org-' || (k %% 1000 %% 100 %% 4) END,
                   CASE WHEN k %% 2 = 0 THEN 25.0 END, '{"env": "bench"}',
                   CASE WHEN k %% 10 = 5 THEN ARRAY['ag-bench-1'] ELSE '{}' END,
                   'default_user_id', 'default_user_id', now() - k * interval '1 second'
            FROM generate_series(1, %s) k
        """, (keys,))
        conn.execute("ANALYZE")


def run(env: dict[str, str], *args: str) -> tuple[dict, float, float]:
    """The command's JSON report, wall seconds and its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([PYTHON, "manage.py", "import_litellm", "--json", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"import_litellm failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(done.stdout), wall, cpu


def migrate(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def fresh_postgres_target() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TARGET_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{TARGET_DB}"')
    return database_url(TARGET_DB)


def bench_target(label: str, target_url: str, source_url: str, keys: int) -> dict:
    env = {**os.environ, "DATABASE_URL": target_url, "LITELLM_DATABASE_URL": source_url}
    env.pop("CELERY_BROKER_URL", None)
    migrate(env)
    first, first_wall, first_cpu = run(env)
    second, second_wall, second_cpu = run(env)
    dry, dry_wall, dry_cpu = run(env, "--dry-run")
    tables = {t["table"]: t for t in first["tables"]}
    created_keys = tables["LiteLLM_VerificationToken"]["created"]
    assert created_keys == keys, f"{created_keys} keys imported of {keys}"
    assert all(t["created"] == t["updated"] == 0 for t in second["tables"]), "the second run wrote rows"
    print(f"\n== {label}")
    print(f"  {'LiteLLM table':<32}{'read':>9}{'created':>9}{'skipped':>9}   second run: unchanged")
    second_tables = {t["table"]: t for t in second["tables"]}
    for name, table in tables.items():
        print(f"  {name:<32}{table['read']:>9}{table['created']:>9}{table['skipped']:>9}"
              f"   {second_tables[name]['unchanged']:>9}")
    print(f"  first run : {first_wall:6.1f} s wall, {first_cpu:6.1f} s CPU of the command "
          f"({first_wall / keys * 1e6:.0f} µs wall per key)")
    print(f"  second run: {second_wall:6.1f} s wall, {second_cpu:6.1f} s CPU (nothing written)")
    print(f"  dry run   : {dry_wall:6.1f} s wall, {dry_cpu:6.1f} s CPU")
    print(f"  machine load average while it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(wall time grows with it; the CPU seconds do not)")
    verdict = "OK" if first_wall < TARGET_SECONDS else "OVER TARGET"
    print(f"  target: first run < {TARGET_SECONDS:.0f} s for {keys:,} keys → {verdict} "
          f"({first_wall / TARGET_SECONDS:.0%} of the target)")
    return {"first": first_wall, "second": second_wall, "dry": dry_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--targets", default="postgres,sqlite", help="postgres, sqlite or both (comma-separated)")
    options = parser.parse_args()
    template = create_database()
    try:
        started = time.monotonic()
        migrations = apply_migrations(database_url(template))
        seed(database_url(template), options.keys)
        print(f"LiteLLM source: {migrations} migrations from litellm-proxy-extras and {options.keys:,} keys seeded "
              f"in {time.monotonic() - started:.1f} s ({database_url(template)})")
        for target in options.targets.split(","):
            if target == "postgres":
                bench_target("accessctl on PostgreSQL", fresh_postgres_target(), database_url(template), options.keys)
                drop_database(TARGET_DB)
            elif target == "sqlite":
                with tempfile.TemporaryDirectory() as directory:
                    bench_target("accessctl on SQLite", f"sqlite:///{directory}/bench-import.sqlite3",
                                 database_url(template), options.keys)
            else:
                raise SystemExit(f"unknown target {target!r}: postgres or sqlite")
    finally:
        drop_database(template)


if __name__ == "__main__":
    main()
