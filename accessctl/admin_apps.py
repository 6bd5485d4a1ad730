"""The admin's AppConfig, apart from the site (admin_site.py): INSTALLED_APPS loads this module before any
model is ready, and the site, loaded from `ready`, reads every app's models."""
from __future__ import annotations

from django.conf import settings
from django.contrib.admin.apps import AdminConfig

from accessctl import redaction


class AccessAdminConfig(AdminConfig):
    """`django.contrib.admin` with accessctl's site as the default `admin.site`."""

    default_site = "accessctl.admin_site.AccessAdminSite"

    def ready(self) -> None:
        super().ready()
        # Every process that loads Django (gunicorn workers, runserver, commands, Celery) redacts secrets
        # from every log record, gunicorn's access log included (accessctl/redaction.py).
        redaction.install(lambda: getattr(settings, "ACCESSCTL_MASTER_KEY", ""))
