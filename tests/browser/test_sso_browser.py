"""SSO in a real browser: log in through the OIDC provider's own page (a separate process), land in the
admin as the org admin the IdP's group maps to, and see only that organization. Screenshots go to
test-artifacts/ (sso_*.png)."""
from __future__ import annotations

from orgs.models import OrganizationMembership, User
from tests.browser.conftest import screenshot
from tests.factories import OrganizationFactory
from tests.sso.conftest import PASSWORD, provider, provider_process, sso_settings  # noqa: F401


def test_browser_sso_login_lands_in_the_admin_with_the_mapped_role_and_only_its_tenant(
    transactional_db, live_server, page, settings, provider  # noqa: F811
):
    acme, globex = OrganizationFactory(organization_alias="Acme"), OrganizationFactory(organization_alias="Globex")
    sso_settings(settings, provider, {"acme-admins": {"organization": str(acme.pk), "role": "org_admin"}})
    base = live_server.url

    page.goto(f"{base}/admin/login/?next=/admin/")
    screenshot(page, "sso_admin_login_page")
    page.click("#sso-login-link")
    page.wait_for_url(f"{provider.url}/authorize**")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    screenshot(page, "sso_provider_sign_in")
    page.click("#sign-in")
    page.wait_for_url(f"{base}/admin/")
    screenshot(page, "sso_org_admin_dashboard")

    alice = User.objects.get(sso_user_id="sub-alice")
    assert OrganizationMembership.objects.get(user=alice, organization=acme).user_role == "org_admin"
    page.goto(f"{base}/admin/orgs/organization/")
    result = page.locator("#result_list")
    assert result.locator("text=Acme").count() == 1
    assert result.locator("text=Globex").count() == 0
    screenshot(page, "sso_org_admin_sees_only_acme")
    page.goto(f"{base}/admin/orgs/organization/{globex.pk}/change/")
    assert "Globex" not in page.locator("#content").inner_text()
