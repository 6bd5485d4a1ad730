"""The access-group sync invariant (SPEC §4) under random sequences of writes from every side.

A hypothesis state machine assigns and unassigns groups from the group's side (`access_group_update` with
`assigned_team_ids` / `assigned_key_ids`, `access_group_assign` / `access_group_unassign`) and from the
team's and key's side (`team_update` / `key_update` with `access_group_ids`, creates with groups), updates
groups' lists, regenerates keys, deletes groups, teams and keys, drifts lists on purpose before a group
delete, and tries refused cross-organization assignments. After every step `sync_all(repair=False)` finds no
drift, and every list equals the relation the writes asked for. Each example runs in a savepoint that is
rolled back, so each starts from a clean database (SQLite and PostgreSQL alike).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accessctl.errors import InvalidInput
from accessgroups import services as access_services
from accessgroups.models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from keys import services as key_services
from keys.models import VirtualKey
from orgs import services as org_services
from orgs.models import Team
from tests.factories import AccessGroupFactory, OrganizationFactory, UserFactory

IN_SYNC = {"teams": [], "keys": [], "groups": []}
MODEL_NAMES = st.lists(st.sampled_from(["openai/gpt-4o", "anthropic/*", "google/gemini-1.5-pro", "mistral/x"]),
                       max_size=3, unique=True)


class AccessGroupSyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each example in its own savepoint, rolled back in teardown: a clean database per example.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.org = OrganizationFactory()
        self.user = UserFactory()
        # The org-owned group may only be assigned inside self.org; the others are global.
        self.org_group = AccessGroupFactory(organization=self.org)
        self.groups: dict[str, AccessGroup] = {str(self.org_group.pk): self.org_group}
        self.teams: dict[str, Team] = {}
        self.keys: dict[str, VirtualKey] = {}
        # The relation the writes asked for (the model the database is checked against).
        self.team_groups: dict[str, set[str]] = defaultdict(set)
        self.key_groups: dict[str, set[str]] = defaultdict(set)
        self.created = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers ------------------------------------------------------------------------------------
    # Draws pick from lists in creation order, never sorted by (random) UUIDs: the same choices must
    # replay to the same rows, or hypothesis cannot shrink or replay a failing sequence.

    def _in_org(self, row: Team | VirtualKey) -> bool:
        return row.organization_id == self.org.pk

    def _groups_for(self, row: Team | VirtualKey) -> list[str]:
        """Groups that may be assigned to this team or key: global ones, plus the org's if it is inside."""
        return list(g for g, group in self.groups.items() if group.organization_id is None or self._in_org(row))

    def _targets_for(self, group: AccessGroup, rows: dict[str, Any]) -> list[str]:
        return list(pk for pk, row in rows.items() if group.organization_id is None or self._in_org(row))

    def _subset(self, data: st.DataObject, items: list[str]) -> set[str]:
        return set(data.draw(st.lists(st.sampled_from(items), unique=True) if items else st.just([])))

    # --- creates --------------------------------------------------------------------------------------

    @rule(data=st.data(), models=MODEL_NAMES)
    def create_group(self, data: st.DataObject, models: list[str]) -> None:
        teams = self._subset(data, list(self.teams))
        keys = self._subset(data, list(self.keys))
        group = access_services.access_group_create(
            actor=self.user,
            access_group_name=f"group-{self.created}",
            access_model_names=models,
            assigned_team_ids=sorted(teams),
            assigned_key_ids=[self.keys[k].token for k in sorted(keys)],
        )
        self.created += 1
        gid = str(group.pk)
        self.groups[gid] = group
        for team in teams:
            self.team_groups[team].add(gid)
        for key in keys:
            self.key_groups[key].add(gid)

    @rule(data=st.data(), in_org=st.booleans())
    def create_team(self, data: st.DataObject, in_org: bool) -> None:
        allowed = list(g for g, grp in self.groups.items() if grp.organization_id is None or in_org)
        groups = self._subset(data, allowed)
        team = org_services.team_create(
            actor=self.user, organization=self.org if in_org else None, access_group_ids=sorted(groups)
        )
        self.teams[str(team.pk)] = team
        self.team_groups[str(team.pk)] = set(groups)

    @rule(data=st.data())
    def create_key(self, data: st.DataObject) -> None:
        team = self.teams[data.draw(st.sampled_from(list(self.teams)))] if self.teams and data.draw(
            st.booleans()
        ) else None
        allowed = list(
            g for g, grp in self.groups.items()
            if grp.organization_id is None or (team is not None and self._in_org(team))
        )
        groups = self._subset(data, allowed)
        key, _ = key_services.key_generate(
            actor=self.user, user=self.user, team=team, access_group_ids=sorted(groups)
        )
        self.keys[str(key.pk)] = key
        self.key_groups[str(key.pk)] = set(groups)

    # --- assignment from the group's side -------------------------------------------------------------

    @precondition(lambda self: self.groups)
    @rule(data=st.data())
    def group_sets_its_teams(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(list(self.groups)))
        wanted = self._subset(data, self._targets_for(self.groups[gid], self.teams))
        access_services.access_group_update(
            actor=self.user, group=self.groups[gid], data={"assigned_team_ids": sorted(wanted)}
        )
        for team in self.teams:
            (self.team_groups[team].add if team in wanted else self.team_groups[team].discard)(gid)

    @precondition(lambda self: self.groups)
    @rule(data=st.data())
    def group_sets_its_keys(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(list(self.groups)))
        wanted = self._subset(data, self._targets_for(self.groups[gid], self.keys))
        access_services.access_group_update(
            actor=self.user, group=self.groups[gid], data={"assigned_key_ids": [self.keys[k].token for k in wanted]}
        )
        for key in self.keys:
            (self.key_groups[key].add if key in wanted else self.key_groups[key].discard)(gid)

    @precondition(lambda self: self.groups)
    @rule(data=st.data(), models=MODEL_NAMES, servers=st.lists(st.sampled_from(["github", "files"]), unique=True))
    def group_updates_its_lists(self, data: st.DataObject, models: list[str], servers: list[str]) -> None:
        gid = data.draw(st.sampled_from(list(self.groups)))
        self.groups[gid] = access_services.access_group_update(
            actor=self.user, group=self.groups[gid], data={"access_model_names": models, "access_mcp_server_ids": servers}
        )

    @precondition(lambda self: self.groups)
    @rule(data=st.data(), assign=st.booleans())
    def group_assigns_or_unassigns(self, data: st.DataObject, assign: bool) -> None:
        gid = data.draw(st.sampled_from(list(self.groups)))
        group = self.groups[gid]
        teams = self._subset(data, self._targets_for(group, self.teams))
        keys = self._subset(data, self._targets_for(group, self.keys))
        write = access_services.access_group_assign if assign else access_services.access_group_unassign
        write(actor=self.user, group=group, teams=[self.teams[t] for t in teams], keys=[self.keys[k] for k in keys])
        for team in teams:
            (self.team_groups[team].add if assign else self.team_groups[team].discard)(gid)
        for key in keys:
            (self.key_groups[key].add if assign else self.key_groups[key].discard)(gid)

    # --- assignment from the team's and key's side ------------------------------------------------------

    @precondition(lambda self: self.teams)
    @rule(data=st.data())
    def team_sets_its_groups(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(list(self.teams)))
        wanted = self._subset(data, self._groups_for(self.teams[tid]))
        org_services.team_update(actor=self.user, team=self.teams[tid], data={"access_group_ids": sorted(wanted)})
        self.team_groups[tid] = wanted

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def key_sets_its_groups(self, data: st.DataObject) -> None:
        kid = data.draw(st.sampled_from(list(self.keys)))
        wanted = self._subset(data, self._groups_for(self.keys[kid]))
        key_services.key_update(actor=self.user, key=self.keys[kid], data={"access_group_ids": sorted(wanted)})
        self.key_groups[kid] = wanted

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def key_regenerates(self, data: st.DataObject) -> None:
        kid = data.draw(st.sampled_from(list(self.keys)))
        self.keys[kid], _ = key_services.key_regenerate(actor=self.user, key=self.keys[kid])

    @precondition(lambda self: [t for t in self.teams.values() if not self._in_org(t)])
    @rule(data=st.data())
    def org_group_to_outside_team_is_refused(self, data: st.DataObject) -> None:
        outside = list(pk for pk, team in self.teams.items() if not self._in_org(team))
        team = self.teams[data.draw(st.sampled_from(outside))]
        with pytest.raises(InvalidInput):
            access_services.access_group_assign(actor=self.user, group=self.org_group, teams=[team])
        with pytest.raises(InvalidInput):
            org_services.team_update(
                actor=self.user, team=team, data={"access_group_ids": [str(self.org_group.pk)]}
            )

    # --- deletes ------------------------------------------------------------------------------------------

    @precondition(lambda self: len(self.groups) > 1)
    @rule(data=st.data())
    def delete_group(self, data: st.DataObject) -> None:
        self.delete_group_by_id(data.draw(st.sampled_from(list(g for g in self.groups if g != str(self.org_group.pk)))))

    @precondition(lambda self: len(self.groups) > 1 and (self.teams or self.keys))
    @rule(data=st.data())
    def drift_then_delete_group(self, data: st.DataObject) -> None:
        """Lists that drifted to name a group (a bug, a manual SQL edit) are cleaned when the group goes."""
        gid = data.draw(st.sampled_from(list(g for g in self.groups if g != str(self.org_group.pk))))
        teams = self._subset(data, list(self.teams))
        keys = self._subset(data, list(self.keys))
        for tid in teams:
            Team.objects.filter(pk=tid).update(access_group_ids=sorted(self.team_groups[tid] | {gid}))
        for kid in keys:
            VirtualKey.objects.filter(pk=kid).update(access_group_ids=sorted(self.key_groups[kid] | {gid}))
        self.delete_group_by_id(gid)

    def delete_group_by_id(self, gid: str) -> None:
        access_services.access_group_delete(actor=self.user, group=AccessGroup.objects.get(pk=gid))
        del self.groups[gid]
        for groups in (*self.team_groups.values(), *self.key_groups.values()):
            groups.discard(gid)

    @precondition(lambda self: self.teams)
    @rule(data=st.data())
    def delete_team(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(list(self.teams)))
        org_services.team_delete(actor=self.user, team=self.teams.pop(tid))
        del self.team_groups[tid]
        for kid in [k for k, key in self.keys.items() if str(key.team_id) == tid]:
            del self.keys[kid]  # a team's keys go with it
            del self.key_groups[kid]

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def delete_key(self, data: st.DataObject) -> None:
        kid = data.draw(st.sampled_from(list(self.keys)))
        key_services.key_delete(actor=self.user, key=self.keys.pop(kid))
        del self.key_groups[kid]

    # --- the invariant -------------------------------------------------------------------------------------

    @invariant()
    def check_access_sync_finds_no_drift(self) -> None:
        assert access_services.sync_all(repair=False) == IN_SYNC

    @invariant()
    def relation_is_what_the_writes_asked_for(self) -> None:
        teams: dict[str, set[str]] = defaultdict(set)
        for team_id, group_id in TeamAccessGroup.objects.values_list("team_id", "access_group_id"):
            teams[str(team_id)].add(str(group_id))
        keys: dict[str, set[str]] = defaultdict(set)
        for key_id, group_id in KeyAccessGroup.objects.values_list("key_id", "access_group_id"):
            keys[str(key_id)].add(str(group_id))
        assert teams == {t: g for t, g in self.team_groups.items() if g}
        assert keys == {k: g for k, g in self.key_groups.items() if g}

    @invariant()
    def every_list_equals_the_relation(self) -> None:
        for team_id, listed in Team.objects.values_list("team_id", "access_group_ids"):
            assert listed == sorted(self.team_groups.get(str(team_id), ()))
        for key_id, listed in VirtualKey.objects.values_list("id", "access_group_ids"):
            assert listed == sorted(self.key_groups.get(str(key_id), ()))
        for group_id, team_count, key_count in AccessGroup.objects.values_list(
            "access_group_id", "assigned_team_count", "assigned_key_count"
        ):
            gid = str(group_id)
            assert team_count == sum(1 for groups in self.team_groups.values() if gid in groups)
            assert key_count == sum(1 for groups in self.key_groups.values() if gid in groups)


@pytest.mark.django_db
def test_access_group_lists_equal_the_relation_after_any_sequence_of_writes():
    run_state_machine_as_test(
        AccessGroupSyncMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=15,
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
