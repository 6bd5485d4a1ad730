"""Prometheus `/metrics` (SPEC §10): our counters move, the scrape is guarded by a token when one is set,
and the admin dashboard charts the last day of checks from the cache."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import REGISTRY

from accessctl import metrics
from accessgroups.bulk import Selection, bulk_assign
from keys import services as key_services
from tests.factories import (
    AccessGroupFactory,
    AdminFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_allowed_and_denied_checks_are_counted_by_reason(check, committed):
    key = KeyFactory()
    allowed = value("accessctl_authz_checks_total", decision="allowed", reason="none")
    blocked = value("accessctl_authz_checks_total", decision="denied", reason="key_blocked")
    unknown = value("accessctl_authz_checks_total", decision="denied", reason="auth_error")

    assert check(key.raw, model=GPT).status_code == 200
    with committed():
        key_services.key_block(actor=None, key=key)
    assert check(key.raw, model=GPT).status_code == 403
    assert check("sk-not-a-key-of-anyone-0000", model=GPT).status_code == 401

    assert value("accessctl_authz_checks_total", decision="allowed", reason="none") == allowed + 1
    assert value("accessctl_authz_checks_total", decision="denied", reason="key_blocked") == blocked + 1
    assert value("accessctl_authz_checks_total", decision="denied", reason="auth_error") == unknown + 1


def test_snapshot_cache_hits_and_misses_are_counted(check):
    key = KeyFactory()
    hits = value("accessctl_snapshot_cache_lookups_total", result="hit")
    misses = value("accessctl_snapshot_cache_lookups_total", result="miss")
    check(key.raw, model=GPT)
    check(key.raw, model=GPT)
    assert value("accessctl_snapshot_cache_lookups_total", result="miss") == misses + 1
    assert value("accessctl_snapshot_cache_lookups_total", result="hit") == hits + 1


def test_invalidations_are_counted(committed):
    key = KeyFactory()
    before = value("accessctl_cache_invalidations_total", kind="token")
    with committed():
        key_services.key_block(actor=None, key=key)
    assert value("accessctl_cache_invalidations_total", kind="token") == before + 1


def test_usage_reports_are_counted(report_usage, settings):
    settings.ACCESSCTL_MASTER_KEY = "sk-master-key-for-metrics-01"
    key = KeyFactory()
    before = value("accessctl_usage_reports_total", outcome="recorded")
    assert report_usage(settings.ACCESSCTL_MASTER_KEY, key=key.raw, model=GPT, spend=0.1).status_code == 202
    assert value("accessctl_usage_reports_total", outcome="recorded") == before + 1


def test_bulk_job_rows_are_counted():
    keys = [KeyFactory() for _ in range(3)]
    group = AccessGroupFactory()
    before = value("accessctl_bulk_job_rows_total", operation="assign")
    bulk_assign(actor=None, target="keys", group_refs=[str(group.pk)], selection=Selection(ids=tuple(k.token for k in keys)))
    assert value("accessctl_bulk_job_rows_total", operation="assign") == before + 3


# --- the scrape ---------------------------------------------------------------------------------


def test_scrape_shows_our_counters_and_django_prometheus(client, check, settings):
    before, after = settings.PROMETHEUS_REQUEST_MIDDLEWARE  # ACCESSCTL_METRICS_REQUESTS=true
    settings.MIDDLEWARE = [before, *settings.MIDDLEWARE, after]
    check(KeyFactory().raw, model=GPT)
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    page = response.content.decode()
    assert 'accessctl_authz_checks_total{decision="allowed",reason="none"}' in page
    assert "accessctl_snapshot_cache_lookups_total" in page
    assert "django_http_requests_total_by_method_total" in page  # django-prometheus's own


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="no-token"),
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param("Basic c2NyYXBlOnRva2Vu", id="other-scheme"),
    ],
)
def test_scrape_without_the_token_is_401_when_one_is_set(client, settings, header):
    settings.ACCESSCTL_METRICS_TOKEN = "metrics-token-1234"
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "auth_error"
    assert b"accessctl_authz" not in response.content


def test_scrape_with_the_token_is_200(client, settings):
    settings.ACCESSCTL_METRICS_TOKEN = "metrics-token-1234"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-1234")
    assert response.status_code == 200 and b"accessctl_authz_checks_total" in response.content


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    """gunicorn's workers each count in their own mmap file; a scrape from any process sums them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "accessctl.settings"}
    count = textwrap.dedent("""
        import django; django.setup()
        from accessctl import metrics
        for _ in range(5): metrics.CHECKS.labels("allowed", "none").inc()
    """)
    scrape = textwrap.dedent("""
        import django; django.setup()
        from django.test import RequestFactory
        from accessctl.health import metrics
        print(metrics(RequestFactory().get("/metrics")).content.decode())
    """)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    page = subprocess.run([sys.executable, "-c", scrape], env=env, check=True, timeout=60,
                          capture_output=True, text=True).stdout
    assert 'accessctl_authz_checks_total{decision="allowed",reason="none"} 10.0' in page


# --- the dashboard's chart ----------------------------------------------------------------------


def test_dashboard_charts_the_last_day_of_checks_for_platform_admins(client, check):
    key = KeyFactory()
    check(key.raw, model=GPT)
    check("sk-not-a-key-of-anyone-0000", model=GPT)
    series = metrics.chart_series()
    assert len(series) == metrics.CHART_BUCKETS
    assert series[-1]["allowed"] >= 1 and series[-1]["denied"] >= 1
    client.force_login(AdminFactory())
    page = client.get("/admin/").content.decode()
    assert 'id="check-chart"' in page and 'class="allowed"' in page and 'class="denied"' in page


def test_dashboard_chart_is_not_shown_to_an_org_admin(client):
    org_admin = UserFactory()
    OrganizationMembershipFactory(organization=OrganizationFactory(), user=org_admin, user_role="org_admin")
    client.force_login(org_admin)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert 'id="check-chart"' not in response.content.decode()


def test_chart_counts_are_written_to_the_cache_once_a_minute_not_per_check(monkeypatch, check):
    key = KeyFactory()
    check(key.raw, model=GPT)  # the first count of the minute writes
    writes: list[str] = []
    monkeypatch.setattr("accessctl.metrics.cache.incr", lambda name, n=1: writes.append(name))
    for _ in range(20):
        check(key.raw, model=GPT)
    assert writes == []
