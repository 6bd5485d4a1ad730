"""scim2-tester (the SCIM compliance checker from PyPI) against the running server (pytest-django's live
server): every check's status is printed, and the summary line is what the issue's closing note quotes."""
from __future__ import annotations

from collections import Counter

import pytest
from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.factories import OrganizationFactory

TOKEN = "scim-token-for-tests-0001"
# What scim2-tester 0.5.2 still reports, each a choice or a known gap (README: SCIM):
KNOWN_DEVIATIONS = {
    # userName is the user's user_id, which keys, memberships and the audit log name: it never changes.
    "object_replacement: userName cannot change: it is the user's user_id.",
    "check_replace_attribute: Failed to replace attribute 'userName': userName cannot change: it is the user's user_id.",
    # Removing `active` deprovisions (active becomes false): a user is never left in between.
    "check_remove_attribute: PATCH modify() did not remove attribute 'active'",
    # POST /.search across resource types is not implemented (501); /Users/.search and /Groups/.search are.
    "search_with_attributes: The server answered 501 without a SCIM error",
    # One e-mail address per user is stored (the primary one); the tester's random values sometimes
    # send several, and then reads back only one.
    "check_add_attribute: PATCH modify() returned unexpected value for 'emails'.",
    "check_replace_attribute: PATCH modify() returned unexpected value for 'emails'.",
}


@pytest.fixture
def scim_server(transactional_db, live_server, settings):
    settings.ACCESSCTL_SCIM_TOKEN = TOKEN
    settings.ACCESSCTL_SCIM_GROUPS = {"target": "team", "organization_id": str(OrganizationFactory().pk)}
    return f"{live_server.url}/scim/v2"


def test_scim2_tester_compliance(scim_server, capsys):
    http = Client(base_url=scim_server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    results = check_server(SyncSCIMClient(http))
    counts = Counter(result.status.name for result in results)
    with capsys.disabled():
        for result in results:
            if result.status is Status.SUCCESS:
                continue
            print(f"scim2-tester {result.status.name:<10} {result.title}: {result.reason or ''}"[:200])
        print("scim2-tester summary:", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
              f"({len(results)} checks)")
    failed = {f"{r.title}: {(r.reason or '').splitlines()[0]}" for r in results
              if r.status in (Status.ERROR, Status.CRITICAL)}
    assert failed <= KNOWN_DEVIATIONS, failed - KNOWN_DEVIATIONS
    assert counts["SUCCESS"] >= 60
