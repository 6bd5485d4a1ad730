"""The admin index is a dashboard of the viewer's tenants: counts, keys expiring within 7 days, budgets
above 80 % and the latest audit entries — another tenant's rows never appear."""
from __future__ import annotations

import pytest
from django.urls import reverse

from keys import services as key_services
from orgs import services as org_services
from tests.admin.conftest import logged_in
from tests.factories import KeyFactory

pytestmark = pytest.mark.django_db


def _dashboard(client):
    return client.get(reverse("admin:index")).context["dashboard"]


def test_admin_dashboard_counts_for_org_admin_cover_own_organization_only(world):
    counts = {row["label"]: row["count"] for row in _dashboard(logged_in(world.users["org_admin"])).counts()}
    assert counts == {"organizations": 1, "teams": 1, "users": 2, "virtual keys": 1, "access groups": 2}


def test_admin_dashboard_counts_for_team_admin_show_only_teams_and_keys(world):
    counts = {row["label"]: row["count"] for row in _dashboard(logged_in(world.users["team_admin"])).counts()}
    assert counts == {"teams": 1, "virtual keys": 1}


def test_admin_dashboard_expiring_keys_lists_own_key_expiring_within_seven_days(world):
    soon = KeyFactory(team=world.own.rows["orgs.team"], duration="3d")
    KeyFactory(team=world.own.rows["orgs.team"], duration="30d")
    KeyFactory(team=world.other.rows["orgs.team"], duration="3d")
    assert _dashboard(logged_in(world.users["org_admin"])).expiring_keys() == [soon]


def test_admin_dashboard_budget_alerts_list_rows_spent_above_eighty_percent(world):
    key = KeyFactory(team=world.own.rows["orgs.team"], max_budget=10.0)
    key_services.key_update(actor=None, key=key, data={"spend": 8.5})
    other = KeyFactory(team=world.other.rows["orgs.team"], max_budget=10.0)
    key_services.key_update(actor=None, key=other, data={"spend": 9.5})
    team = world.own.rows["orgs.team"]
    org_services.team_update(actor=None, team=team, data={"max_budget": 100.0, "spend": 50.0})
    alerts = _dashboard(logged_in(world.users["org_admin"])).budget_alerts()
    assert [(a["object"], a["share"]) for a in alerts] == [(key, 85)]


def test_admin_dashboard_budget_alerts_include_an_organization_over_its_budget(world):
    org = world.own.organization
    org_services.organization_update(actor=None, organization=org, data={"max_budget": 10.0, "spend": 9.0})
    alerts = _dashboard(logged_in(world.users["proxy_admin"])).budget_alerts()
    assert [(a["kind"], a["object"]) for a in alerts] == [("organization", org)]


def test_admin_dashboard_latest_audit_for_org_admin_shows_own_entries_only(world):
    entries = _dashboard(logged_in(world.users["org_admin"])).latest_audit()
    assert entries and {str(e.organization_id) for e in entries} == {str(world.own.organization.pk)}


def test_admin_dashboard_latest_audit_for_team_admin_is_empty(world):
    assert _dashboard(logged_in(world.users["team_admin"])).latest_audit() == []


def test_admin_index_page_renders_the_dashboard_sections(world):
    page = logged_in(world.users["org_admin"]).get(reverse("admin:index")).content.decode()
    assert all(part in page for part in ('id="expiring-keys"', 'id="budget-alerts"', 'id="latest-audit"'))
    assert "Globex" not in page
