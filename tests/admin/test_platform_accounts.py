"""An org admin does not take over a platform admin's account by sharing an organization with them —
neither in the admin nor through the API, since both ask the same policy."""
from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accessctl.roles import OrgRole, PlatformRole
from tests.factories import KeyFactory, OrganizationFactory, OrganizationMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_admin_and_boss():
    org = OrganizationFactory()
    org_admin = OrganizationMembershipFactory(organization=org, user_role=OrgRole.ORG_ADMIN).user
    boss = OrganizationMembershipFactory(organization=org, user=UserFactory(user_role=PlatformRole.PROXY_ADMIN)).user
    return org_admin, boss


def _api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {KeyFactory(user=user).raw}")
    return client


def test_api_user_update_of_a_platform_admin_by_org_admin_answers_403(org_admin_and_boss):
    org_admin, boss = org_admin_and_boss
    response = _api(org_admin).patch(reverse("user-detail", args=[boss.user_id]), {"user_alias": "pwned"},
                                     format="json")
    assert response.status_code == 403
    boss.refresh_from_db()
    assert boss.user_alias != "pwned"


def test_api_user_update_of_a_plain_member_by_org_admin_succeeds(org_admin_and_boss):
    org_admin, boss = org_admin_and_boss
    member = OrganizationMembershipFactory(organization=boss.organization_memberships.get().organization).user
    response = _api(org_admin).patch(reverse("user-detail", args=[member.user_id]), {"user_alias": "Member"},
                                     format="json")
    assert response.status_code == 200 and response.json()["user_alias"] == "Member"
