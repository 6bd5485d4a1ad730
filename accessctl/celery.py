"""The Celery app; tasks run eagerly in-process when no broker is configured (SPEC §8)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accessctl.settings")

app = Celery("accessctl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
