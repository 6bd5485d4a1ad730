"""The admin in a real browser: a proxy admin's first organization, team and key (secret shown once);
an org admin confined to their organization who bulk-assigns an access group; a viewer with no write
controls. Each scenario saves screenshots to test-artifacts/."""
from __future__ import annotations

from accessctl.roles import OrgRole, PlatformRole
from accessgroups.admin import assignment as access_admin
from keys.models import VirtualKey
from tests.browser.conftest import log_in, screenshot
from tests.factories import (
    AccessGroupFactory,
    AdminFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    UserFactory,
)

PASSWORD = "browser-test-password"


def choose(page, field: str, text: str) -> None:
    """Pick `text` in the admin's autocomplete (select2) widget of `field`."""
    page.click(f"#id_{field} + .select2 .select2-selection")
    page.fill(".select2-container--open .select2-search__field", text)
    page.locator(".select2-results__option", has_text=text).first.click()


def test_browser_proxy_admin_creates_organization_team_and_key_and_sees_the_secret_once(
    transactional_db, live_server, page
):
    AdminFactory(user_id="root@example.test", password=PASSWORD)
    base = live_server.url
    log_in(page, base, "root@example.test", PASSWORD)

    page.goto(f"{base}/admin/orgs/organization/add/")
    page.fill("#id_organization_alias", "Initech")
    page.click("input[name=_save]")
    page.wait_for_url(f"{base}/admin/orgs/organization/")
    assert page.locator("#result_list", has_text="Initech").count() == 1

    page.goto(f"{base}/admin/orgs/team/add/")
    page.fill("#id_team_alias", "Initech platform")
    choose(page, "organization", "Initech")
    page.click("input[name=_save]")
    page.wait_for_url(f"{base}/admin/orgs/team/")
    assert page.locator("#result_list", has_text="Initech platform").count() == 1

    page.goto(f"{base}/admin/keys/virtualkey/add/")
    page.fill("#id_key_alias", "initech-ci")
    choose(page, "team", "Initech platform")
    page.click("input[name=_save]")
    secret = page.input_value("#new-key-secret")
    assert secret.startswith("sk-") and len(secret) > 20
    screenshot(page, "proxy_admin_key_secret_once")

    page.click("text=Continue to the key")
    page.wait_for_url("**/change/")
    page.locator("#virtualkey_form").wait_for()
    key = VirtualKey.objects.get(key_alias="initech-ci")
    assert key.team.organization.organization_alias == "Initech"
    assert secret not in page.content() and key.key_name in page.content()
    screenshot(page, "proxy_admin_key_change_page")
    page.goto(f"{base}/admin/keys/virtualkey/")
    assert page.locator("#result_list", has_text="initech-ci").count() == 1 and secret not in page.content()


def test_browser_org_admin_sees_only_their_organization_and_bulk_assigns_a_group(
    transactional_db, live_server, page, monkeypatch
):
    acme, globex = OrganizationFactory(organization_alias="Acme"), OrganizationFactory(organization_alias="Globex")
    acme_team = TeamFactory(organization=acme, team_alias="Acme platform")
    globex_team = TeamFactory(organization=globex, team_alias="Globex platform")
    keys = [KeyFactory(team=acme_team, user=None, key_alias=f"acme-key-{i}") for i in range(3)]
    KeyFactory(team=globex_team, user=None, key_alias="globex-key")
    group = AccessGroupFactory(organization=acme, access_group_name="acme-models")
    lead = UserFactory(user_id="lead@acme.test", password=PASSWORD)
    OrganizationMembershipFactory(organization=acme, user=lead, user_role=OrgRole.ORG_ADMIN)
    # Three keys exceed this threshold: the assignment runs as a background job (eager without a broker).
    monkeypatch.setattr(access_admin, "BULK_JOB_THRESHOLD", 2)
    base = live_server.url

    log_in(page, base, "lead@acme.test", PASSWORD)
    screenshot(page, "org_admin_dashboard")
    page.goto(f"{base}/admin/orgs/organization/")
    listing = page.inner_text("#result_list")
    assert "Acme" in listing and "Globex" not in listing
    screenshot(page, "org_admin_organizations")

    response = page.goto(f"{base}/admin/orgs/team/{globex_team.pk}/change/")
    assert response.status == 404 and page.locator("h1", has_text="Not found").count() == 1
    screenshot(page, "org_admin_other_team_404")

    page.goto(f"{base}/admin/keys/virtualkey/")
    assert "globex-key" not in page.inner_text("#result_list")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "assign_access_groups")
    page.click("button[name=index]")
    page.check("label:has-text('acme-models') input")
    screenshot(page, "org_admin_bulk_assign_form")
    page.click("#apply-bulk")
    page.wait_for_url(f"{base}/admin/accessgroups/bulkjob/*/change/")
    assert "succeeded" in page.content() and 'value="100"' in page.content()
    screenshot(page, "org_admin_bulk_job_progress")

    page.goto(f"{base}/admin/keys/virtualkey/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3 and all("acme-models" in rows.nth(i).inner_text() for i in range(3))
    screenshot(page, "org_admin_keys_with_group")
    for key in keys:
        assert VirtualKey.objects.get(pk=key.pk).access_group_ids == [str(group.pk)]


def test_browser_admin_viewer_sees_no_write_controls(transactional_db, live_server, page):
    team = TeamFactory(organization=OrganizationFactory(organization_alias="Acme"), team_alias="Acme platform")
    KeyFactory(team=team, user=None, key_alias="acme-key")
    UserFactory(user_id="auditor@example.test", user_role=PlatformRole.PROXY_ADMIN_VIEWER, password=PASSWORD)
    base = live_server.url

    log_in(page, base, "auditor@example.test", PASSWORD)
    page.goto(f"{base}/admin/keys/virtualkey/")
    assert page.locator("#result_list", has_text="acme-key").count() == 1
    assert page.locator("a.addlink").count() == 0
    options = page.locator("select[name=action] option").evaluate_all("els => els.map(e => e.value)")
    assert [o for o in options if o] == ["export_csv"]
    screenshot(page, "viewer_keys_list")

    page.goto(f"{base}/admin/orgs/team/{team.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0 and page.locator("a.deletelink").count() == 0
    assert page.locator(".readonly", has_text="Acme platform").count() >= 1
    screenshot(page, "viewer_team_page")

