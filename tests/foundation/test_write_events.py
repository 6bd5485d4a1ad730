"""The write-event hook (accessctl.events): a write announces what it changed once it commits, and the
snapshot cache (keys, subscribed in its AppConfig.ready) is the one that forgets it."""
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.dispatch import Signal

from accessctl import events
from accessctl.events import Affects
from accessgroups.services import catalog_upsert
from keys import cache
from orgs import hooks
from orgs.audit import record

pytestmark = pytest.mark.django_db


def _heard(monkeypatch) -> list[Affects]:
    seen: list[Affects] = []
    monkeypatch.setattr(cache, "invalidate", seen.append)
    return seen


def test_an_announcement_reaches_the_cache_only_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    seen = _heard(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        events.publish(Affects(team_ids={"t1"}))
        assert seen == []
    assert seen == [Affects(team_ids={"t1"})]


def test_an_empty_announcement_is_not_sent(monkeypatch, django_capture_on_commit_callbacks):
    seen = _heard(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        events.publish(Affects())
    assert callbacks == [] and seen == []


def test_the_audit_record_publishes_what_the_write_changed(monkeypatch, django_capture_on_commit_callbacks):
    seen = _heard(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        record(actor=None, action="x", object_type="team", object_id="t1", affects=Affects(team_ids={"t1"}))
    assert seen == [Affects(team_ids={"t1"})]


def test_a_catalog_write_drops_the_cached_catalog(monkeypatch, django_capture_on_commit_callbacks):
    dropped = []
    monkeypatch.setattr(cache, "invalidate_catalog", lambda: dropped.append(True))
    with django_capture_on_commit_callbacks(execute=True):
        catalog_upsert(actor=None, kind="model", data={"model_name": "m-1", "provider": "openai"})
    assert dropped == [True]


def test_an_orgs_hook_nobody_answers_is_an_error_not_a_skipped_write():
    with pytest.raises(ImproperlyConfigured):
        hooks.ask(Signal(), team=None)


def test_each_orgs_hook_has_exactly_one_answer_from_the_app_that_owns_the_rows():
    for hook in (hooks.user_leaving, hooks.team_deleting, hooks.team_moved, hooks.assign_groups, hooks.key_budget_scope):
        assert len(hook.receivers) == 1
