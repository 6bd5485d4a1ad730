"""`manage.py load_demo`: the demo the README promises, written through the services, idempotent."""
from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.core.management import call_command
from django.http import HttpRequest
from django.test import Client

from accessgroups.management.commands.load_demo import ADMIN_PASSWORD, ADMIN_USER_ID
from accessgroups.models import AccessGroup, Agent, CatalogModel, MCPServer
from accessgroups.services import sync_all
from keys.models import VirtualKey
from orgs.models import AuditEntry, Organization, Team, User

pytestmark = pytest.mark.django_db


def _load() -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def _row_counts() -> dict[str, int]:
    """Rows of every model of our apps (and the audit log): what "same rows" means."""
    return {
        model._meta.label: model.objects.count()
        for app in ("orgs", "keys", "accessgroups")
        for model in apps.get_app_config(app).get_models()
    }


def test_load_demo_creates_what_the_readme_promises():
    _load()
    counts = {
        "organizations": Organization.objects.count(),
        "teams": Team.objects.count(),
        "users": User.objects.count(),
        "keys": VirtualKey.objects.count(),
        "access groups": AccessGroup.objects.count(),
        "catalog models": CatalogModel.objects.count(),
        "MCP servers": MCPServer.objects.count(),
        "agents": Agent.objects.count(),
    }
    assert counts == {"organizations": 2, "teams": 4, "users": 10, "keys": 20, "access groups": 3,
                      "catalog models": 12, "MCP servers": 2, "agents": 2}


def test_load_demo_twice_leaves_the_same_rows():
    _load()
    first = _row_counts()
    _load()
    assert _row_counts() == first


def test_load_demo_second_run_creates_nothing():
    _load()
    assert "Nothing to create" in _load()


def test_load_demo_writes_through_the_audited_services():
    _load()
    assert AuditEntry.objects.filter(action="key_generate").count() == 20


def test_load_demo_keeps_access_group_lists_in_sync():
    _load()
    assert sync_all(repair=False) == {"teams": [], "keys": [], "groups": []}


def test_load_demo_admin_logs_in_with_the_printed_password():
    output = _load()
    assert ADMIN_USER_ID in output and ADMIN_PASSWORD in output
    assert Client().login(request=HttpRequest(), username=ADMIN_USER_ID, password=ADMIN_PASSWORD)


def test_load_demo_prints_no_key_secret():
    assert "sk-" not in _load()
