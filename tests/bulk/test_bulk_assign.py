"""bulk_assign: chosen by ids, CSV or filters; dry run; re-run; unassign; batched queries; the sync invariant."""
from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accessctl.errors import InvalidInput
from accessgroups import services
from accessgroups.bulk import Selection, bulk_assign, encode_position
from accessgroups.models import KeyAccessGroup, TeamAccessGroup
from accessgroups.services import sync_all
from keys.authz import authorize
from keys.cache import cache_key, generation_key, get_snapshot
from keys.models import VirtualKey
from orgs.models import AuditEntry, Team
from tests.factories import AccessGroupFactory, KeyFactory, OrganizationFactory, TeamFactory

pytestmark = pytest.mark.django_db

IN_SYNC = {"teams": [], "keys": [], "groups": []}
# Before the first batch: the group by name, the team filter's existence check, the count of matches.
SETUP_QUERIES = 3
# A batch that changes rows. PostgreSQL: savepoint, lock the groups, JIT off for the batch, one statement that
# reads the batch's keys and changes the assignment rows and the keys' lists, one UPDATE of the group's key
# count, one audit entry, release. Elsewhere: savepoint, read the keys, one INSERT (which returns what it added), lock the groups,
# read the keys' assignments, one UPDATE of the keys' lists, the count, the audit entry, release.
CHANGING_BATCH_QUERIES = 7 if connection.vendor == "postgresql" else 9
# A batch with nothing to do. PostgreSQL: savepoint, lock the groups, JIT off, the statement (reading the
# keys, changing nothing), release. Elsewhere: savepoint, read the keys, the INSERT (adding nothing), lock the
# groups, read the keys' assignments, release.
IDLE_BATCH_QUERIES = 5 if connection.vendor == "postgresql" else 6


def assigned(group) -> set[str]:
    return {str(k) for k in KeyAccessGroup.objects.filter(access_group=group).values_list("key_id", flat=True)}


def run(group, selection: Selection, **options):
    return bulk_assign(actor=None, target=options.pop("target", "keys"), group_refs=[str(group.pk)],
                       selection=selection, **options)


@pytest.fixture
def group():
    return AccessGroupFactory(access_group_name="gpt-4o-users", access_model_names=["openai/gpt-4o"])


@pytest.fixture
def team_keys():
    team = TeamFactory()
    return team, [KeyFactory(team=team, user=None, key_alias=f"ml-{i}") for i in range(5)]


def test_bulk_assign_by_ids_assigns_exactly_those_keys(group):
    chosen, other = KeyFactory(), KeyFactory()
    also = KeyFactory()
    result = run(group, Selection(ids=(chosen.token, str(also.pk))))
    assert (result.matched, result.changed) == (2, 2)
    assert assigned(group) == {str(chosen.pk), str(also.pk)}
    assert str(other.pk) not in assigned(group)
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_by_raw_secret_finds_the_key(group):
    key = KeyFactory()
    run(group, Selection(ids=(key.raw,)))
    key.refresh_from_db()
    assert key.access_group_ids == [str(group.pk)]


def test_bulk_assign_unknown_id_refused_before_any_write(group):
    key = KeyFactory()
    with pytest.raises(InvalidInput) as refused:
        run(group, Selection(ids=(key.token, "sk-not-a-real-key-0000", "0" * 64)))
    assert refused.value.param == "ids"
    assert "sk-not-a-real-key" not in refused.value.message  # a secret is never echoed
    assert assigned(group) == set()


def test_bulk_assign_by_csv_assigns_listed_keys(group, tmp_path):
    listed, unlisted = KeyFactory(), KeyFactory()
    csv_file = tmp_path / "keys.csv"
    csv_file.write_text(f"key_alias,token\nfirst,{listed.token}\n")
    call_command("bulk_assign", "--group", group.access_group_name, "--csv", str(csv_file), "--json")
    assert assigned(group) == {str(listed.pk)}
    assert str(unlisted.pk) not in assigned(group)
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_csv_without_header_reads_first_column(group, tmp_path):
    key = KeyFactory()
    csv_file = tmp_path / "keys.csv"
    csv_file.write_text(f"{key.pk},ignored\n")
    call_command("bulk_assign", "--group", str(group.pk), "--csv", str(csv_file), "--json")
    assert assigned(group) == {str(key.pk)}


def test_bulk_assign_by_team_filter_assigns_all_keys_of_the_team(group, team_keys):
    team, keys = team_keys
    outside = KeyFactory()
    result = run(group, Selection(team_id=str(team.pk)), batch_size=2)
    assert (result.matched, result.changed, result.batches) == (5, 5, 3)
    assert assigned(group) == {str(k.pk) for k in keys}
    assert str(outside.pk) not in assigned(group)
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_batches_split_keys_created_at_the_same_instant(group):
    # Batches resume after (created_at, id): keys sharing a created_at across a batch boundary are each
    # processed once, and the cursor (microseconds) resumes exactly after the last one processed.
    team = TeamFactory()
    keys = [KeyFactory(team=team, user=None) for _ in range(5)]
    instant = timezone.now().replace(microsecond=123456)
    VirtualKey.objects.filter(team=team).update(created_at=instant)
    reports = []
    result = run(group, Selection(team_id=str(team.pk)), batch_size=2, on_batch=reports.append)
    assert (result.matched, result.changed, result.batches) == (5, 5, 3)
    assert [r.matched for r in reports] == [2, 2, 1]
    assert assigned(group) == {str(k.pk) for k in keys}
    last = max(keys, key=lambda k: str(k.pk))
    assert result.cursor == encode_position((instant, last.pk))
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_filter_covers_what_matched_when_the_run_started(group, team_keys):
    team, keys = team_keys
    created = []

    def create_a_key_meanwhile(report):
        if not created:
            created.append(KeyFactory(team=team, user=None))

    result = run(group, Selection(team_id=str(team.pk)), batch_size=2, on_batch=create_a_key_meanwhile)
    assert (result.matched, result.changed) == (5, 5)
    assert assigned(group) == {str(k.pk) for k in keys}
    rerun = run(group, Selection(team_id=str(team.pk)), batch_size=2)
    assert (rerun.matched, rerun.changed) == (6, 1)
    assert assigned(group) == {str(k.pk) for k in [*keys, *created]}
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_by_alias_prefix_assigns_matching_keys(group, team_keys):
    _, keys = team_keys
    run(group, Selection(alias_prefix="ml-1"))
    assert assigned(group) == {str(keys[1].pk)}
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_by_organization_filter_assigns_the_organizations_keys(group):
    org, elsewhere = OrganizationFactory(), OrganizationFactory()
    inside = KeyFactory(team=TeamFactory(organization=org), user=None)
    KeyFactory(team=TeamFactory(organization=elsewhere), user=None)
    run(group, Selection(organization_id=str(org.pk)))
    assert assigned(group) == {str(inside.pk)}


def test_bulk_assign_teams_by_ids_updates_team_lists(group):
    team, other = TeamFactory(), TeamFactory()
    result = run(group, Selection(ids=(str(team.pk),)), target="teams")
    team.refresh_from_db()
    group.refresh_from_db()
    assert result.changed == 1
    assert team.access_group_ids == [str(group.pk)]
    assert group.assigned_team_count == 1
    assert not TeamAccessGroup.objects.filter(team=other).exists()
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_without_a_selection_refused(group):
    with pytest.raises(InvalidInput) as refused:
        run(group, Selection())
    assert refused.value.param == "ids"


def test_bulk_assign_org_group_skips_keys_of_other_organizations(team_keys):
    org = OrganizationFactory()
    org_group = AccessGroupFactory(organization=org)
    inside = KeyFactory(team=TeamFactory(organization=org), user=None)
    result = run(org_group, Selection(all=True))
    assert result.matched == 1
    assert assigned(org_group) == {str(inside.pk)}


def test_bulk_assign_org_group_named_foreign_key_refused(team_keys):
    org_group = AccessGroupFactory(organization=OrganizationFactory())
    _, keys = team_keys
    with pytest.raises(InvalidInput) as refused:
        run(org_group, Selection(ids=(keys[0].token,)))
    assert refused.value.param == "ids"


def test_bulk_assign_dry_run_changes_nothing(group, team_keys):
    team, _ = team_keys
    audit_before = AuditEntry.objects.count()
    result = run(group, Selection(team_id=str(team.pk)), dry_run=True)
    assert (result.matched, result.changed, result.rows) == (5, 5, 5)
    assert assigned(group) == set()
    assert not VirtualKey.objects.exclude(access_group_ids=[]).exists()
    assert AuditEntry.objects.count() == audit_before


def test_bulk_assign_dry_run_command_prints_each_change(group, team_keys, capsys):
    team, keys = team_keys
    call_command("bulk_assign", "-g", group.access_group_name, "--team", str(team.pk), "--dry-run")
    out = capsys.readouterr().out
    assert all(f"would assign: key {k.key_alias} ({k.token})" in out for k in keys)
    assert assigned(group) == set()


def test_bulk_assign_rerun_changes_nothing(group, team_keys):
    team, _ = team_keys
    run(group, Selection(team_id=str(team.pk)))
    audit_before = AuditEntry.objects.count()
    again = run(group, Selection(team_id=str(team.pk)))
    assert (again.matched, again.changed, again.unchanged, again.rows) == (5, 0, 5, 0)
    assert AuditEntry.objects.count() == audit_before
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_interrupted_run_completes_on_rerun(group, team_keys):
    team, keys = team_keys

    def interrupt(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(group, Selection(team_id=str(team.pk)), batch_size=2, on_batch=interrupt)
    assert len(assigned(group)) == 2  # the first batch committed, with its lists in sync
    assert sync_all(repair=False) == IN_SYNC
    rest = run(group, Selection(team_id=str(team.pk)), batch_size=2)
    assert (rest.changed, rest.unchanged) == (3, 2)
    assert assigned(group) == {str(k.pk) for k in keys}
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_unassign_removes_only_the_named_group(group, team_keys):
    team, keys = team_keys
    other = AccessGroupFactory()
    run(group, Selection(team_id=str(team.pk)))
    run(other, Selection(ids=(keys[0].token,)))
    result = run(group, Selection(team_id=str(team.pk)), unassign=True, batch_size=2)
    keys[0].refresh_from_db()
    group.refresh_from_db()
    assert (result.changed, result.rows) == (5, 5)
    assert assigned(group) == set()
    assert group.assigned_key_count == 0
    assert keys[0].access_group_ids == [str(other.pk)]
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_on_another_database_falls_back_to_the_orm(group, team_keys, monkeypatch):
    # Databases without set-based SQL of their own (neither PostgreSQL nor SQLite) get Django's bulk
    # methods and the services' sync: the same lists, the same invariant.
    from accessgroups import bulk_sql

    monkeypatch.setattr(bulk_sql, "_native", lambda: False)
    team, keys = team_keys
    other = AccessGroupFactory()
    run(other, Selection(ids=(keys[0].token,)))
    result = run(group, Selection(team_id=str(team.pk)), batch_size=2)
    assert (result.matched, result.changed, result.batches) == (5, 5, 3)
    keys[0].refresh_from_db()
    assert keys[0].access_group_ids == sorted([str(group.pk), str(other.pk)])
    group.refresh_from_db()
    assert group.assigned_key_count == len(keys)
    assert sync_all(repair=False) == IN_SYNC
    removed = run(group, Selection(team_id=str(team.pk)), unassign=True, batch_size=2)
    assert (removed.changed, removed.rows) == (5, 5)
    keys[0].refresh_from_db()
    assert keys[0].access_group_ids == [str(other.pk)]
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_unassign_rerun_changes_nothing(group, team_keys):
    team, _ = team_keys
    result = run(group, Selection(team_id=str(team.pk)), unassign=True)
    assert (result.matched, result.changed) == (5, 0)


def test_bulk_assign_adds_the_group_to_a_drifted_list_and_repair_heals_the_rest(group, team_keys):
    # PostgreSQL's batch changes each list by a difference (SQLite's also rewrites it from the relation):
    # either way the group is added, and check_access_sync --repair is what heals older drift.
    team, keys = team_keys
    VirtualKey.objects.filter(pk=keys[0].pk).update(access_group_ids=["drifted"])
    run(group, Selection(team_id=str(team.pk)))
    keys[0].refresh_from_db()
    assert str(group.pk) in keys[0].access_group_ids
    sync_all(repair=True)
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_assign_keeps_lists_of_one_group_sorted_on_either_side():
    team = TeamFactory()
    before, after = AccessGroupFactory(access_group_id="aaa-group"), AccessGroupFactory(access_group_id="zzz-group")
    first, last, listed = (KeyFactory(team=team, user=None) for _ in range(3))
    services.access_group_assign(actor=None, group=before, keys=[first])
    services.access_group_assign(actor=None, group=after, keys=[last])
    middle = AccessGroupFactory(access_group_id="mmm-group")
    VirtualKey.objects.filter(pk=listed.pk).update(access_group_ids=["mmm-group"])  # listed, not assigned
    bulk_assign(actor=None, target="keys", group_refs=["mmm-group"], selection=Selection(team_id=str(team.pk)))
    lists = dict(VirtualKey.objects.filter(team=team).values_list("pk", "access_group_ids"))
    assert lists == {first.pk: ["aaa-group", "mmm-group"], last.pk: ["mmm-group", "zzz-group"],
                     listed.pk: ["mmm-group"]}
    middle.refresh_from_db()
    assert middle.assigned_key_count == 3 and sync_all(repair=False) == IN_SYNC


def test_bulk_assign_writes_one_audit_entry_per_batch(group, team_keys):
    team, keys = team_keys
    run(group, Selection(team_id=str(team.pk)), batch_size=2)
    entries = list(AuditEntry.objects.filter(action="access_group_bulk_assign").order_by("id"))
    assert len(entries) == 3
    assert [e.after["key_count"] for e in entries] == [2, 2, 1]
    assert sorted(t for e in entries for t in e.after["key_ids_sample"]) == sorted(k.token for k in keys)


@pytest.mark.parametrize("batches", [pytest.param(1, id="one-batch"), pytest.param(3, id="three-batches")])
def test_bulk_assign_query_count_per_batch_pinned(group, team_keys, django_assert_num_queries, batches):
    team, _ = team_keys
    batch_size = {1: 10, 3: 2}[batches]
    with django_assert_num_queries(SETUP_QUERIES + CHANGING_BATCH_QUERIES * batches):
        run(group, Selection(team_id=str(team.pk)), batch_size=batch_size)


def test_bulk_assign_query_count_does_not_grow_with_rows(group, django_assert_num_queries):
    small, large = TeamFactory(), TeamFactory()
    for team, count in ((small, 2), (large, 12)):
        for _ in range(count):
            KeyFactory(team=team, user=None)
    with django_assert_num_queries(SETUP_QUERIES + CHANGING_BATCH_QUERIES):
        run(group, Selection(team_id=str(small.pk)), batch_size=100)
    with django_assert_num_queries(SETUP_QUERIES + CHANGING_BATCH_QUERIES):
        run(group, Selection(team_id=str(large.pk)), batch_size=100)


def test_bulk_assign_rerun_query_count_pinned(group, team_keys, django_assert_num_queries):
    team, _ = team_keys
    run(group, Selection(team_id=str(team.pk)), batch_size=2)
    with django_assert_num_queries(SETUP_QUERIES + IDLE_BATCH_QUERIES * 3):
        run(group, Selection(team_id=str(team.pk)), batch_size=2)


def test_bulk_assign_fires_no_per_row_signals(group, team_keys, monkeypatch):
    team, _ = team_keys
    calls = []
    monkeypatch.setattr("accessgroups.services.sync_keys", lambda ids: calls.append(ids))
    run(group, Selection(team_id=str(team.pk)))
    run(group, Selection(team_id=str(team.pk)), unassign=True)
    assert calls == []


def test_bulk_assign_restricts_the_next_check_after_commit(group, django_capture_on_commit_callbacks):
    key = KeyFactory()
    assert authorize(get_snapshot(key.token), now=timezone.now(), model="anthropic/claude")  # cached: all models
    with django_capture_on_commit_callbacks(execute=True):
        run(group, Selection(ids=(key.token,)))
    assert cache.get(cache_key(key.token)) is None
    decision = authorize(get_snapshot(key.token), now=timezone.now(), model="anthropic/claude")
    assert decision.type == "key_model_access_denied"
    assert authorize(get_snapshot(key.token), now=timezone.now(), model="openai/gpt-4o")


@pytest.fixture
def large_invalidation(monkeypatch):
    """Make a batch of 3 keys take the path of a real bulk batch's (more than 500 tokens): generations only."""
    from keys import feed

    monkeypatch.setattr(feed, "MAX_NAMES_PER_MESSAGE", 2)


def test_bulk_assign_large_batch_refuses_the_next_check(group, team_keys, large_invalidation,
                                                        django_capture_on_commit_callbacks):
    team, keys = team_keys
    for key in keys:  # cached before: every model allowed
        assert authorize(get_snapshot(key.token), now=timezone.now(), model="anthropic/claude")
    with django_capture_on_commit_callbacks(execute=True):
        run(group, Selection(team_id=str(team.pk)))
    for key in keys:
        assert cache.get(generation_key(key.token)) is None
        decision = authorize(get_snapshot(key.token), now=timezone.now(), model="anthropic/claude")
        assert decision.type == "key_model_access_denied"


def test_bulk_unassign_large_batch_allows_the_next_check(group, team_keys, large_invalidation,
                                                         django_capture_on_commit_callbacks):
    team, keys = team_keys
    with django_capture_on_commit_callbacks(execute=True):
        run(group, Selection(team_id=str(team.pk)))
    for key in keys:  # cached while restricted to the group's model
        assert authorize(get_snapshot(key.token), now=timezone.now(), model="anthropic/claude").type == (
            "key_model_access_denied")
    with django_capture_on_commit_callbacks(execute=True):
        run(group, Selection(team_id=str(team.pk)), unassign=True)
    for key in keys:
        assert authorize(get_snapshot(key.token), now=timezone.now(), model="anthropic/claude")


def test_bulk_assign_team_snapshots_dropped_after_commit(group, team_keys, django_capture_on_commit_callbacks):
    team, keys = team_keys
    for key in keys:
        get_snapshot(key.token)
    with django_capture_on_commit_callbacks(execute=True):
        run(group, Selection(ids=(str(team.pk),)), target="teams")
    assert all(cache.get(cache_key(k.token)) is None for k in keys)


def test_bulk_assign_command_json_prints_the_summary(group, team_keys, capsys):
    team, _ = team_keys
    call_command("bulk_assign", "-g", str(group.pk), "--team", str(team.pk), "--json")
    summary = json.loads(capsys.readouterr().out)
    assert {k: summary[k] for k in ("matched", "changed", "unchanged", "dry_run")} == {
        "matched": 5, "changed": 5, "unchanged": 0, "dry_run": False}
    assert isinstance(summary["seconds"], float)


def test_bulk_assign_command_unknown_group_fails_with_the_field(team_keys):
    with pytest.raises(CommandError, match="access_group: Unknown access group"):
        call_command("bulk_assign", "-g", "no-such-group", "--all")


def test_bulk_assign_command_teams_with_team_filter_refused(group):
    team = TeamFactory()
    with pytest.raises(CommandError, match="team_id"):
        call_command("bulk_assign", "-g", str(group.pk), "--teams", "--team", str(team.pk))


def test_bulk_assign_group_names_resolve_case_insensitively(group):
    key = KeyFactory()
    run_result = bulk_assign(actor=None, target="keys", group_refs=["GPT-4O-USERS"], selection=Selection(ids=(key.token,)))
    assert run_result.access_group_ids == [str(group.pk)]


def test_bulk_assign_team_list_matches_relation_on_team_side(group):
    teams = [TeamFactory() for _ in range(3)]
    run(group, Selection(ids=tuple(str(t.pk) for t in teams)), target="teams", batch_size=2)
    group.refresh_from_db()
    assert group.assigned_team_count == len(teams)
    assert all(t.access_group_ids == [str(group.pk)] for t in Team.objects.filter(pk__in=[t.pk for t in teams]))


def test_bulk_unassign_with_a_drifted_key_list_keeps_counts_exact(group, team_keys):
    from keys.models import VirtualKey

    team, keys = team_keys
    run(group, Selection(ids=(keys[1].token,)))
    # keys[0] lists the group without an assignment row (drift): the batch rewrites its list too.
    VirtualKey.objects.filter(pk=keys[0].pk).update(access_group_ids=[str(group.pk)])
    run(group, Selection(ids=(keys[0].token, keys[1].token)), unassign=True)
    group.refresh_from_db()
    assert group.assigned_key_count == 0
    sync_all(repair=True)
    assert sync_all(repair=False) == IN_SYNC


@pytest.mark.skipif(connection.vendor == "postgresql",
                    reason="PostgreSQL's batch is one statement: test_bulk_assign_racing_* race it for real")
def test_bulk_assign_list_synced_meanwhile_is_read_again_not_overwritten(group, team_keys, monkeypatch):
    from accessgroups import bulk
    from accessgroups.services import access_group_assign

    team, keys = team_keys
    other = AccessGroupFactory()
    real_write = bulk.write_target_lists

    def write_after_a_concurrent_assignment(kind, updates):
        # Between the batch's read of keys[0] and its write, another writer assigns a group and syncs it.
        if not KeyAccessGroup.objects.filter(access_group=other).exists():
            access_group_assign(actor=None, group=other, keys=[keys[0]])
        return real_write(kind, updates)

    monkeypatch.setattr(bulk, "write_target_lists", write_after_a_concurrent_assignment)
    run(group, Selection(team_id=str(team.pk)))
    keys[0].refresh_from_db()
    assert keys[0].access_group_ids == sorted([str(group.pk), str(other.pk)])
    assert sync_all(repair=False) == IN_SYNC


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="races two connections; SQLite lets one writer in at a time")
def test_bulk_assign_racing_a_single_assignment_loses_neither(monkeypatch):
    import threading

    from accessgroups import bulk
    from accessgroups.services import access_group_assign

    group, other = AccessGroupFactory(), AccessGroupFactory()
    team = TeamFactory()
    keys = [KeyFactory(team=team, user=None) for _ in range(3)]
    errors: list[BaseException] = []

    def assign_other_from_another_connection() -> None:
        try:
            access_group_assign(actor=None, group=other, keys=[keys[0]])
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            from django.db import connection as thread_connection

            thread_connection.close()

    real_lock = bulk._lock_groups

    def lock_after_a_concurrent_commit(groups):
        # Before the batch's statement: another connection assigns and commits (it must not wait).
        if not errors and not KeyAccessGroup.objects.filter(access_group=other).exists():
            writer = threading.Thread(target=assign_other_from_another_connection)
            writer.start()
            writer.join(timeout=10)
            assert not writer.is_alive(), "the single assignment must not wait for the batch"
        return real_lock(groups)

    monkeypatch.setattr(bulk, "_lock_groups", lock_after_a_concurrent_commit)
    run(group, Selection(team_id=str(team.pk)))
    assert not errors
    keys[0].refresh_from_db()
    assert keys[0].access_group_ids == sorted([str(group.pk), str(other.pk)])
    assert sync_all(repair=False) == IN_SYNC


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="races two connections; SQLite lets one writer in at a time")
def test_bulk_assign_waiting_on_a_key_another_writer_holds_adds_to_its_list_not_over_it():
    # Another connection assigns a group to keys[0] and holds the key's row lock until the batch is
    # waiting on it; the batch's UPDATE then applies its difference to the list that writer committed.
    import threading
    import time

    from django.db import connection as main_connection
    from django.db import transaction

    from accessgroups.services import access_group_assign

    group, other = AccessGroupFactory(), AccessGroupFactory()
    team = TeamFactory()
    keys = [KeyFactory(team=team, user=None) for _ in range(3)]
    holding, errors = threading.Event(), []

    def assign_and_hold() -> None:
        from django.db import connection as thread_connection

        try:
            with transaction.atomic():
                access_group_assign(actor=None, group=other, keys=[keys[0]])
                holding.set()
                time.sleep(1.0)  # the batch meanwhile reaches keys[0] and waits for this commit
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            holding.set()
            thread_connection.close()

    writer = threading.Thread(target=assign_and_hold)
    writer.start()
    assert holding.wait(timeout=10)
    run(group, Selection(team_id=str(team.pk)))
    writer.join(timeout=10)
    assert not errors
    keys[0].refresh_from_db()
    assert keys[0].access_group_ids == sorted([str(group.pk), str(other.pk)])
    main_connection.close()
    assert sync_all(repair=False) == IN_SYNC
