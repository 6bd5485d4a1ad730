"""The assignment relation and the denormalized ids agree after writes from either side."""
import pytest

from accessgroups import services
from tests.factories import AccessGroupFactory, KeyFactory, TeamFactory

pytestmark = pytest.mark.django_db


def test_assign_from_key_side_updates_both_lists():
    group = AccessGroupFactory()
    key = KeyFactory(access_group_ids=[group.pk])
    group.refresh_from_db()
    assert key.access_group_ids == [str(group.pk)]
    assert group.assigned_key_count == 1
    assert list(group.key_assignments.values_list("key__token", flat=True)) == [key.token]


def test_deleting_group_clears_drifted_team_lists():
    group = AccessGroupFactory()
    team = TeamFactory()
    type(team).objects.filter(pk=team.pk).update(access_group_ids=[str(group.pk)])  # drift on purpose
    services.access_group_delete(actor=None, group=group)
    team.refresh_from_db()
    assert team.access_group_ids == []
    assert services.sync_all(repair=False) == {"teams": [], "keys": [], "groups": []}
