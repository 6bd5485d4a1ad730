"""Removing an organization member ends their rights in that organization at once (SPEC §1)."""
import pytest

from keys.cache import get_snapshot
from keys.models import VirtualKey
from orgs import services
from orgs.models import OrganizationMembership, TeamMembership
from tests.factories import (
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
)

pytestmark = pytest.mark.django_db


def test_org_member_removal_deletes_their_keys_in_the_organization(django_capture_on_commit_callbacks):
    org = OrganizationFactory()
    membership = OrganizationMembershipFactory(organization=org)
    personal = KeyFactory(user=membership.user, organization=org)
    assert get_snapshot(personal.token) is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.organization_member_delete(actor=None, membership=membership)
    assert not VirtualKey.objects.filter(pk=personal.pk).exists()
    assert get_snapshot(personal.token) is None


def test_org_member_removal_removes_them_from_the_organizations_teams_and_their_team_keys():
    org = OrganizationFactory()
    team = TeamFactory(organization=org)
    membership = OrganizationMembershipFactory(organization=org)
    TeamMembershipFactory(team=team, user=membership.user)
    team_key = KeyFactory(user=membership.user, team=team)
    services.organization_member_delete(actor=None, membership=membership)
    assert not TeamMembership.objects.filter(user=membership.user, team=team).exists()
    assert not VirtualKey.objects.filter(pk=team_key.pk).exists()


def test_org_member_removal_leaves_keys_outside_the_organization():
    org = OrganizationFactory()
    membership = OrganizationMembershipFactory(organization=org)
    elsewhere = KeyFactory(user=membership.user)
    services.organization_member_delete(actor=None, membership=membership)
    assert not OrganizationMembership.objects.filter(pk=membership.pk).exists()
    assert VirtualKey.objects.filter(pk=elsewhere.pk).exists()
