"""POST /api/v1/access-groups/{id}/bulk-assign/ → 202 and a job; GET /api/v1/bulk-jobs/{id}/ → progress and result."""
from __future__ import annotations

import uuid

import pytest

from accessctl.roles import OrgRole
from accessgroups.bulk_jobs import bulk_job_run
from accessgroups.models import BulkJob, KeyAccessGroup
from accessgroups.services import sync_all
from tests.factories import (
    AccessGroupFactory,
    AdminFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

IN_SYNC = {"teams": [], "keys": [], "groups": []}


def bulk_url(group_id) -> str:
    return f"/api/v1/access-groups/{group_id}/bulk-assign/"


def job_url(job_id) -> str:
    return f"/api/v1/bulk-jobs/{job_id}/"


@pytest.fixture
def call(client):
    def _call(method: str, url: str, key, body=None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key.raw}"}
        if method == "post":
            return client.post(url, body or {}, content_type="application/json", **headers)
        return client.get(url, **headers)

    return _call


@pytest.fixture
def admin_key():
    return KeyFactory(user=AdminFactory())


@pytest.fixture
def org():
    return OrganizationFactory()


@pytest.fixture
def org_admin_key(org):
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user, user_role=OrgRole.ORG_ADMIN)
    return KeyFactory(user=user)


@pytest.fixture
def org_team_keys(org):
    team = TeamFactory(organization=org)
    return team, [KeyFactory(team=team, user=None) for _ in range(3)]


def test_bulk_assign_api_accepts_with_202_and_a_queued_job(call, admin_key, org_team_keys):
    team, _ = org_team_keys
    group = AccessGroupFactory()
    response = call("post", bulk_url(group.pk), admin_key, {"team_id": str(team.pk)})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response["Location"] == job_url(body["job_id"])
    assert KeyAccessGroup.objects.count() == 0  # nothing runs before the request commits


def test_bulk_assign_api_job_runs_after_commit_and_reports_its_result(
    call, admin_key, org_team_keys, django_capture_on_commit_callbacks
):
    team, keys = org_team_keys
    group = AccessGroupFactory()
    with django_capture_on_commit_callbacks(execute=True):
        accepted = call("post", bulk_url(group.pk), admin_key, {"team_id": str(team.pk)})
    job = call("get", job_url(accepted.json()["job_id"]), admin_key).json()
    assert job["status"] == "succeeded"
    assert job["progress"] == 1.0
    assert {k: job["result"][k] for k in ("matched", "changed", "unchanged")} == {
        "matched": 3, "changed": 3, "unchanged": 0}
    assert KeyAccessGroup.objects.filter(access_group=group).count() == len(keys)
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_job_get_reports_queued_then_finished(call, admin_key, org_team_keys):
    team, _ = org_team_keys
    group = AccessGroupFactory()
    job_id = call("post", bulk_url(group.pk), admin_key, {"team_id": str(team.pk)}).json()["job_id"]
    queued = call("get", job_url(job_id), admin_key).json()
    assert (queued["status"], queued["progress"], queued["matched"]) == ("queued", 0.0, 0)
    bulk_job_run(job_id)
    done = call("get", job_url(job_id), admin_key).json()
    assert (done["status"], done["processed"], done["changed"]) == ("succeeded", 3, 3)


def test_bulk_job_run_twice_changes_nothing_more(admin_key, org_team_keys, call):
    team, _ = org_team_keys
    group = AccessGroupFactory()
    job_id = call("post", bulk_url(group.pk), admin_key, {"team_id": str(team.pk)}).json()["job_id"]
    first = bulk_job_run(job_id)
    second = bulk_job_run(job_id)
    assert (first.status, second.changed) == ("succeeded", 3)
    assert KeyAccessGroup.objects.filter(access_group=group).count() == 3


def test_bulk_assign_api_dry_run_reports_without_writing(
    call, admin_key, org_team_keys, django_capture_on_commit_callbacks
):
    team, _ = org_team_keys
    group = AccessGroupFactory()
    with django_capture_on_commit_callbacks(execute=True):
        accepted = call("post", bulk_url(group.pk), admin_key, {"team_id": str(team.pk), "dry_run": True})
    job = BulkJob.objects.get(pk=accepted.json()["job_id"])
    assert (job.status, job.result["changed"], job.dry_run) == ("succeeded", 3, True)
    assert KeyAccessGroup.objects.count() == 0


def test_bulk_assign_api_org_admin_assigns_own_group_to_own_keys(
    call, org, org_admin_key, org_team_keys, django_capture_on_commit_callbacks
):
    _, keys = org_team_keys
    group = AccessGroupFactory(organization=org)
    with django_capture_on_commit_callbacks(execute=True):
        accepted = call("post", bulk_url(group.pk), org_admin_key, {"all": True})
    job = call("get", job_url(accepted.json()["job_id"]), org_admin_key).json()
    assert (job["status"], job["result"]["changed"], job["organization_id"]) == ("succeeded", 3, str(org.pk))


def test_bulk_assign_api_foreign_group_not_found(call, org_admin_key):
    foreign = AccessGroupFactory(organization=OrganizationFactory())
    response = call("post", bulk_url(foreign.pk), org_admin_key, {"all": True})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_bulk_assign_api_unknown_group_not_found(call, admin_key):
    for group_id in (uuid.uuid4(), "not-a-uuid"):
        assert call("post", bulk_url(group_id), admin_key, {"all": True}).status_code == 404


def test_bulk_assign_api_org_admin_on_global_group_forbidden(call, org_admin_key):
    response = call("post", bulk_url(AccessGroupFactory().pk), org_admin_key, {"all": True})
    assert response.status_code == 403


def test_bulk_assign_api_org_member_without_admin_role_forbidden(call, org):
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user, user_role=OrgRole.INTERNAL_USER)
    response = call("post", bulk_url(AccessGroupFactory(organization=org).pk), KeyFactory(user=user), {"all": True})
    assert response.status_code == 403


def test_bulk_assign_api_org_admin_naming_foreign_key_refused(call, org, org_admin_key):
    group = AccessGroupFactory(organization=org)
    foreign = KeyFactory(team=TeamFactory(organization=OrganizationFactory()), user=None)
    response = call("post", bulk_url(group.pk), org_admin_key, {"ids": [foreign.token]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "ids"
    assert not BulkJob.objects.exists()


@pytest.mark.parametrize(
    "body, param",
    [
        pytest.param({"target": "users", "all": True}, "target", id="bad-target"),
        pytest.param({"team_id": "nope"}, "team_id", id="malformed-team"),
        pytest.param({"team_id": str(uuid.uuid4())}, "team_id", id="unknown-team"),
        pytest.param({}, "ids", id="no-selection"),
        pytest.param({"ids": "not-a-list"}, "ids", id="ids-not-a-list"),
        pytest.param({"all": True, "unassign": "maybe"}, "unassign", id="bad-boolean"),
    ],
)
def test_bulk_assign_api_bad_input_names_the_field(call, admin_key, body, param):
    response = call("post", bulk_url(AccessGroupFactory().pk), admin_key, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_bulk_job_get_other_tenant_not_found(call, admin_key, org_admin_key):
    other_org_group = AccessGroupFactory(organization=OrganizationFactory())
    job_id = call("post", bulk_url(other_org_group.pk), admin_key, {"all": True}).json()["job_id"]
    response = call("get", job_url(job_id), org_admin_key)
    assert response.status_code == 404


def test_bulk_job_get_unknown_job_not_found(call, admin_key):
    for job_id in (uuid.uuid4(), "nope"):
        assert call("get", job_url(job_id), admin_key).status_code == 404


def test_bulk_job_get_without_key_unauthorized(client):
    assert client.get(job_url(uuid.uuid4())).status_code == 401


def test_bulk_job_get_query_count_pinned(call, admin_key, django_assert_num_queries):
    job_id = call("post", bulk_url(AccessGroupFactory().pk), admin_key, {"all": True}).json()["job_id"]
    # The key with its path, the caller's org and team memberships, then the job.
    with django_assert_num_queries(4):
        assert call("get", job_url(job_id), admin_key).status_code == 200


def test_bulk_job_unexpected_error_marks_the_job_failed(call, admin_key, monkeypatch):
    job_id = call("post", bulk_url(AccessGroupFactory().pk), admin_key, {"all": True}).json()["job_id"]

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("accessgroups.bulk_jobs.bulk_assign", broken)
    with pytest.raises(RuntimeError):
        bulk_job_run(job_id)
    job = call("get", job_url(job_id), admin_key).json()
    assert (job["status"], job["error"]) == ("failed", "Internal error (RuntimeError); see the worker's log.")


def test_bulk_job_of_a_deleted_group_fails_with_the_reason(call, admin_key):
    from accessgroups.services import access_group_delete

    group = AccessGroupFactory()
    job_id = call("post", bulk_url(group.pk), admin_key, {"all": True}).json()["job_id"]
    access_group_delete(actor=None, group=group)
    job = bulk_job_run(job_id)
    assert job.status == "failed"
    assert "Unknown access group" in job.error
