"""Bulk assignment and key listing at scale, on PostgreSQL (`make bench-bulk`).

On a fresh database it measures:
1. `/key/list` (page 1 and the next page, 50 keys) and `/api/v1/keys/` with 100 keys in the table, then
   with 1,000,000 (inserted with COPY): p50 over repeated requests and the queries per request, which
   must not change with the table's size (target: p50 ≤ 50 ms).
2. `bulk_assign` of one access group to the 100,000 keys of one team: seconds and queries (target:
   ≤ 3 s, queries proportional to batches), then `check_access_sync` over the whole table.
3. The naive per-row ORM path (one `access_group_assign` per key, as a client looping over single
   updates causes) on 2,000 keys, and the per-row ratio naive/bulk (goal ≥ 20×).
4. Reads of a group (issue 17) on every route — LiteLLM's `/v1/access_group[/{id}]` and its
   `/v1/unified_access_group` aliases, REST `/api/v1/access-groups/[{id}/[keys/]]`, the admin's group
   page — with 100,000 keys, then with 1,000,000: p50 and response size (targets: ≤ 100 ms, ≤ 1 MB).
5. `bulk_assign` of a second group to all 1,000,000 keys (target: ≤ 30 s), its audit entries (one per
   batch, a count and a sample), and `check_access_sync` (counts included) over the whole table.
6. Deleting the first group (100,000 keys): seconds and statements, which must not grow with its keys.

Only its own database (`accessctl_bench_bulk`, or `$BENCH_BULK_DB`; dropped and recreated) is touched.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_BULK_DB", "accessctl_bench_bulk")  # two runs at once need two names
MASTER_KEY = "sk-bench-bulk-master-key-0001"
BENCH_CACHE_URL = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/13")
TARGETS = {"bulk_seconds": 3.0, "million_seconds": 30.0, "ratio": 20.0, "list_p50_ms": 50.0,
           "group_read_ms": 100.0, "group_read_bytes": 1_000_000, "audit_entry_bytes": 4_096,
           "delete_queries": 20}


def fresh_database() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{BENCH_DB}"


def _redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(BENCH_CACHE_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    # The shared cache production runs with (Redis), on a database and prefix of the benchmark's own.
    os.environ["CACHE_URL"] = BENCH_CACHE_URL if _redis_reachable() else "locmemcache://accessctl-bench"
    os.environ["CACHE_KEY_PREFIX"] = BENCH_DB.replace("_", "-")
    os.environ["ACCESSCTL_MASTER_KEY"] = MASTER_KEY
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accessctl.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def counted() -> Iterator[list[int]]:
    """Count the statements sent to the database (cheaper than capturing their SQL)."""
    from django.db import connection

    box = [0]

    def wrapper(execute, sql, params, many, context):
        box[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield box


@contextmanager
def cpu_time() -> Iterator[list[float]]:
    """CPU seconds spent by this process and by its PostgreSQL backend (local server) inside the block.

    On a shared machine wall time includes waiting for a CPU; this is the work itself, i.e. about the
    wall time the same run takes on an idle machine of the same speed.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def backend_cpu() -> float:
        try:
            fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the server is not on this machine
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    box = [0.0, 0.0]
    own, server = time.process_time(), backend_cpu()
    yield box
    box[0], box[1] = time.process_time() - own, backend_cpu() - server


def copy_keys(count: int, *, start: int, team_id, organization_id) -> None:
    """Insert `count` keys straight into the table with COPY (setup only: no services, no audit)."""
    from django.db import connection

    from accessctl.ids import uuid7
    from keys.models import VirtualKey

    fields = [f for f in VirtualKey._meta.concrete_fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    base = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    now = datetime.datetime.now(datetime.UTC)

    def constant(field):
        if field.null:
            return None
        default = field.get_default()
        if field.get_internal_type() == "JSONField":
            return json.dumps(default if default is not None else {})
        return default

    template = [constant(f) for f in fields]
    index = {f.column: n for n, f in enumerate(fields)}
    for column, fixed in (("team_id", team_id), ("organization_id", organization_id), ("updated_at", now),
                          ("created_by", "bench"), ("updated_by", "bench")):
        template[index[column]] = fixed
    sql = f"COPY {VirtualKey._meta.db_table} ({columns}) FROM STDIN"
    # 100,000 rows per COPY: one statement of 900,000 outlasts the statement timeout on a busy machine.
    for chunk in range(start, start + count, 100_000):
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for i in range(chunk, min(chunk + 100_000, start + count)):
                token = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
                row = list(template)
                created_at = base + datetime.timedelta(microseconds=37 * i)
                row[index["id"]] = uuid7(created_at)  # as the model's default would have made it then
                row[index["token"]] = token
                row[index["key_name"]] = f"sk-...{token[-4:]}"
                row[index["key_alias"]] = f"bench-{i}"
                row[index["created_at"]] = created_at
                copy.write_row(row)


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm: connections, caches, plans
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def bench_lists(label: str, runs: int) -> dict[str, tuple[float, int]]:
    """p50 (ms) and queries per request of the key lists, as a gateway operator's dashboard calls them."""
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")

    def call(url: str, params: dict) -> dict:
        response = client.get(url, params)
        assert response.status_code == 200, response.content[:300]
        return response.json()

    first = call("/api/v1/keys/", {"page_size": 50})
    cursor_page = first["next"].split("?", 1)[1]
    cases = {
        "/key/list page 1": lambda: call("/key/list", {"page": 1, "size": 50}),
        "/key/list page 2": lambda: call("/key/list", {"page": 2, "size": 50}),
        "/key/list page 1 full objects": lambda: call("/key/list", {"page": 1, "size": 50,
                                                                    "return_full_object": "true"}),
        "/api/v1/keys/ first page": lambda: call("/api/v1/keys/", {"page_size": 50}),
        "/api/v1/keys/ next page": lambda: client.get(f"/api/v1/keys/?{cursor_page}"),
    }
    results = {}
    for name, fn in cases.items():
        samples = timed(fn, runs)
        with counted() as queries:
            fn()
        results[name] = (statistics.median(samples), queries[0])
        print(f"  [{label}] {name:32s} p50 {statistics.median(samples):7.2f} ms   {queries[0]} queries")
    return results


def bench_group_reads(group, label: str, runs: int) -> dict[str, tuple[float, int, float]]:
    """p50 (ms) and response bytes of every read of one group, as LiteLLM clients, REST clients and an
    admin's browser call them."""
    from django.test import Client
    from django.urls import reverse

    from orgs.models import User

    api = Client(HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")
    admin = Client()
    admin.force_login(User.objects.get(user_id="bench-admin"))
    keys_url = f"/api/v1/access-groups/{group.pk}/keys/"
    first = api.get(keys_url, {"page_size": 50}).json()
    deep = first["next"]  # the second page: a cursor, as a client paging on would send
    cases = {
        "GET /v1/access_group/{id}": (api, f"/v1/access_group/{group.pk}"),
        "GET /v1/unified_access_group/{id}": (api, f"/v1/unified_access_group/{group.pk}"),
        "GET /v1/access_group (list)": (api, "/v1/access_group"),
        "GET /v1/unified_access_group (list)": (api, "/v1/unified_access_group"),
        "GET /api/v1/access-groups/{id}/": (api, f"/api/v1/access-groups/{group.pk}/"),
        "GET /api/v1/access-groups/ (list)": (api, "/api/v1/access-groups/"),
        "GET /api/v1/access-groups/{id}/keys/": (api, f"{keys_url}?page_size=50"),
        "GET /api/v1/access-groups/{id}/keys/ next": (api, deep),
        "admin group page": (admin, reverse("admin:accessgroups_accessgroup_change", args=[group.pk])),
        "admin group list": (admin, reverse("admin:accessgroups_accessgroup_changelist")),
    }
    results = {}
    for name, (client, url) in cases.items():
        sizes = []

        def call(client=client, url=url, sizes=sizes) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.content[:300])
            sizes.append(len(response.content))

        with cpu_time() as cpu:
            samples = timed(call, runs)
        per_request = sum(cpu) / (runs + 1) * 1000  # timed() also makes one warm-up call
        results[name] = (statistics.median(samples), max(sizes), per_request)
        print(f"  [{label}] {name:42s} p50 {statistics.median(samples):7.2f} ms   CPU {per_request:6.2f} ms   "
              f"{max(sizes):>9,} bytes")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bulk-keys", type=int, default=100_000)
    parser.add_argument("--naive-keys", type=int, default=2_000)
    parser.add_argument("--table-keys", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30, help="requests per list measurement")
    parser.add_argument("--no-million", action="store_true",
                        help="skip section 5 (the assignment to every key of the table)")
    parser.add_argument("--batch-size", type=int, default=None, help="bulk_assign batch size (default: its own)")
    args = parser.parse_args()

    setup_django(fresh_database())
    from django.conf import settings
    from django.db import connection

    from accessgroups.bulk import DEFAULT_BATCH_SIZE, Selection, bulk_assign
    from accessgroups.models import KeyAccessGroup
    from accessgroups.services import access_group_assign, access_group_create, sync_all
    from keys.models import VirtualKey
    from orgs.models import AuditEntry
    from orgs.roles import PlatformRole
    from orgs.services import organization_create, team_create, user_create

    print(f"PostgreSQL {connection.pg_version // 10000}, database {BENCH_DB}, cache {settings.CACHES['default']['BACKEND']}, "
          f"{os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} (the machine is shared)")
    org = organization_create(actor=None, organization_alias="bench")
    user_create(actor=None, user_id="bench-admin", user_role=PlatformRole.PROXY_ADMIN)
    small_team = team_create(actor=None, team_alias="small", organization=org)
    bulk_team = team_create(actor=None, team_alias="bulk", organization=org)
    naive_team = team_create(actor=None, team_alias="naive", organization=org)
    filler_team = team_create(actor=None, team_alias="filler", organization=org)

    print("\n1. Key listing: page of 50")
    copy_keys(100, start=0, team_id=small_team.pk, organization_id=org.pk)
    analyze()
    small = bench_lists("100 keys", args.runs)
    started = time.perf_counter()
    copy_keys(args.bulk_keys, start=100, team_id=bulk_team.pk, organization_id=org.pk)
    copy_keys(args.naive_keys, start=100 + args.bulk_keys, team_id=naive_team.pk, organization_id=org.pk)
    rest = args.table_keys - 100 - args.bulk_keys - args.naive_keys
    copy_keys(max(rest, 0), start=100 + args.bulk_keys + args.naive_keys, team_id=filler_team.pk,
              organization_id=org.pk)
    analyze()
    total = VirtualKey.objects.count()
    print(f"  (inserted up to {total:,} keys with COPY in {time.perf_counter() - started:.1f} s)")
    large = bench_lists(f"{total:,} keys", args.runs)

    print(f"\n2. bulk_assign: one group to the {args.bulk_keys:,} keys of one team", flush=True)
    group = access_group_create(actor=None, access_group_name="bench-bulk", access_model_names=["openai/gpt-4o"])
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    with cpu_time() as cpu, counted() as queries:
        result = bulk_assign(actor=None, target="keys", group_refs=[str(group.pk)],
                             selection=Selection(team_id=str(bulk_team.pk)), batch_size=batch_size)
    bulk_queries = queries[0]
    bulk_cpu = sum(cpu)
    print(f"  {result.changed:,} keys changed in {result.seconds:.2f} s, {result.batches} batches of {batch_size}, "
          f"{bulk_queries} queries ({bulk_queries / max(result.batches, 1):.1f} per batch, "
          f"{bulk_queries / max(result.changed, 1):.4f} per key)")
    print(f"  CPU: {cpu[0]:.2f} s Python + {cpu[1]:.2f} s PostgreSQL backend = {bulk_cpu:.2f} s "
          f"(wall time minus waiting for a CPU)")
    with counted() as queries:
        again = bulk_assign(actor=None, target="keys", group_refs=[str(group.pk)],
                            selection=Selection(team_id=str(bulk_team.pk)), batch_size=batch_size)
    print(f"  re-run: {again.changed} changed, {again.unchanged:,} unchanged in {again.seconds:.2f} s, "
          f"{queries[0]} queries")
    group.refresh_from_db()
    assigned = KeyAccessGroup.objects.filter(access_group=group).count()
    started = time.perf_counter()
    drift = sync_all(repair=False)
    in_sync = not any(drift.values())
    print(f"  check_access_sync over {total:,} keys: {'in sync' if in_sync else drift} "
          f"({time.perf_counter() - started:.1f} s); group count {group.assigned_key_count:,} keys, "
          f"relation {assigned:,} rows")

    print(f"\n3. Naive per-row ORM loop: access_group_assign() once per key, {args.naive_keys:,} keys")
    naive_group = access_group_create(actor=None, access_group_name="bench-naive",
                                      access_model_names=["openai/gpt-4o"])
    keys = list(VirtualKey.objects.filter(team=naive_team).order_by("pk"))
    with cpu_time() as cpu, counted() as queries:
        started = time.perf_counter()
        for key in keys:
            access_group_assign(actor=None, group=naive_group, keys=[key])
        naive_seconds = time.perf_counter() - started
    naive_cpu = sum(cpu)
    naive_per_row = naive_seconds / len(keys)
    bulk_per_row = result.seconds / result.changed
    ratio = naive_per_row / bulk_per_row
    print(f"  {len(keys):,} keys in {naive_seconds:.2f} s, {queries[0]:,} queries "
          f"({queries[0] / len(keys):.1f} per key)")
    print(f"  per key: naive {naive_per_row * 1e3:.3f} ms, bulk {bulk_per_row * 1e3:.4f} ms → bulk is {ratio:.0f}× faster")
    cpu_ratio = (naive_cpu / len(keys)) / (bulk_cpu / max(result.changed, 1)) if bulk_cpu else 0.0
    print(f"  CPU per key: naive {naive_cpu / len(keys) * 1e3:.3f} ms, bulk {bulk_cpu / max(result.changed, 1) * 1e3:.4f} ms "
          f"→ {cpu_ratio:.0f}×")

    print(f"\n4. Reads of a group with {group.assigned_key_count:,} keys", flush=True)
    analyze()
    reads = {f"{group.assigned_key_count:,}": bench_group_reads(group, f"{group.assigned_key_count:,} keys", args.runs)}

    million = None
    if not args.no_million:
        print(f"\n5. bulk_assign: a second group to every key of the table ({total:,})", flush=True)
        everyone = access_group_create(actor=None, access_group_name="bench-everyone",
                                       access_model_names=["openai/gpt-4o-mini"])
        audit_before = AuditEntry.objects.count()
        with cpu_time() as cpu, counted() as queries:
            million = bulk_assign(actor=None, target="keys", group_refs=[str(everyone.pk)],
                                  selection=Selection(organization_id=str(org.pk)), batch_size=batch_size)
        million_cpu = sum(cpu)
        print(f"  {million.changed:,} keys changed in {million.seconds:.2f} s "
              f"({million.changed / max(million.seconds, 1e-9):,.0f} keys/s), {million.batches} batches, "
              f"{queries[0]} queries")
        print(f"  CPU: {cpu[0]:.2f} s Python + {cpu[1]:.2f} s PostgreSQL backend = {million_cpu:.2f} s")
        entries = list(AuditEntry.objects.order_by("id")[audit_before:].values_list("after", flat=True))
        largest_entry = max((len(json.dumps(e)) for e in entries), default=0)
        print(f"  audit: {len(entries)} entries for {million.batches} batches, the largest {largest_entry:,} bytes "
              f"(a count and a sample of {len(entries[0].get('key_ids_sample', [])) if entries else 0} tokens)")
        started = time.perf_counter()
        million_drift = sync_all(repair=False)
        million_sync = not any(million_drift.values())
        everyone.refresh_from_db()
        print(f"  check_access_sync over {total:,} keys: {'in sync' if million_sync else million_drift} "
              f"({time.perf_counter() - started:.1f} s); group count {everyone.assigned_key_count:,}")
        analyze()
        print(f"\n4b. Reads of a group with {everyone.assigned_key_count:,} keys", flush=True)
        reads[f"{everyone.assigned_key_count:,}"] = bench_group_reads(
            everyone, f"{everyone.assigned_key_count:,} keys", args.runs)

    print(f"\n6. Deleting the group of {group.assigned_key_count:,} keys (set-based: statements bounded)", flush=True)
    from accessgroups.services import access_group_delete

    with cpu_time() as cpu, counted() as queries:
        started = time.perf_counter()
        access_group_delete(actor=None, group=group)
        delete_seconds = time.perf_counter() - started
    delete_queries = queries[0]
    print(f"  {delete_seconds:.2f} s, {delete_queries} queries; CPU: {cpu[0]:.2f} s Python + {cpu[1]:.2f} s PostgreSQL")

    print("\nSummary")
    checks = [
        (f"bulk_assign {result.changed:,} keys ≤ {TARGETS['bulk_seconds']:.0f} s (wall)", result.seconds,
         result.seconds <= TARGETS["bulk_seconds"]),
        (f"bulk_assign {result.changed:,} keys ≤ {TARGETS['bulk_seconds']:.0f} s (CPU, Python + PostgreSQL)",
         round(bulk_cpu, 2), bulk_cpu <= TARGETS["bulk_seconds"]),
        (f"queries proportional to batches ({result.batches} batches)", bulk_queries,
         bulk_queries <= 12 * result.batches + 10),
        (f"per-row ratio ≥ {TARGETS['ratio']:.0f}×", round(ratio, 1), ratio >= TARGETS["ratio"]),
        ("check_access_sync clean", in_sync, in_sync),
    ]
    for name, (p50, count) in large.items():
        checks.append((f"{name} p50 ≤ {TARGETS['list_p50_ms']:.0f} ms at {total:,} keys", round(p50, 2),
                       p50 <= TARGETS["list_p50_ms"]))
        checks.append((f"{name} queries: {small[name][1]} at 100 keys, {count} at {total:,}", count,
                       count == small[name][1]))
    if million is not None:
        checks += [
            (f"bulk_assign {million.changed:,} keys ≤ {TARGETS['million_seconds']:.0f} s (wall)", million.seconds,
             million.seconds <= TARGETS["million_seconds"] and million.changed == total),
            (f"bulk_assign {million.changed:,} keys ≤ {TARGETS['million_seconds']:.0f} s (CPU, Python + PostgreSQL)",
             round(million_cpu, 2), million_cpu <= TARGETS["million_seconds"]),
            (f"one audit entry per batch ({million.batches} batches)", len(entries), len(entries) == million.batches),
            (f"audit entry ≤ {TARGETS['audit_entry_bytes']:,} bytes (a count and a sample)", largest_entry,
             largest_entry <= TARGETS["audit_entry_bytes"]),
            (f"check_access_sync clean at {total:,} keys (lists and counts)", million_sync, million_sync),
        ]
    checks.append((f"group delete of {result.changed:,} keys: statements bounded (≤ {TARGETS['delete_queries']})",
                   delete_queries, delete_queries <= TARGETS["delete_queries"]))
    for size, results in reads.items():
        for name, (p50, length, per_request) in results.items():
            checks.append((f"{name} at {size} keys: p50 ≤ {TARGETS['group_read_ms']:.0f} ms (wall)", round(p50, 2),
                           p50 <= TARGETS["group_read_ms"]))
            checks.append((f"{name} at {size} keys: ≤ {TARGETS['group_read_ms']:.0f} ms (CPU, Python + PostgreSQL)",
                           round(per_request, 2), per_request <= TARGETS["group_read_ms"]))
            checks.append((f"{name} at {size} keys: ≤ {TARGETS['group_read_bytes']:,} bytes", length,
                           length <= TARGETS["group_read_bytes"]))
    for name, value, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
