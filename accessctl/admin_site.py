"""The admin site: who may log in follows from roles, and the index is a dashboard of the user's tenants.

Loaded by `AccessAdminConfig.ready` (accessctl/admin_apps.py), once every app's models are ready."""
from __future__ import annotations

import datetime
import math
from typing import Any

from axes.helpers import get_lockout_response
from django.contrib.admin import AdminSite
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accessctl import metrics
from accessgroups.models import AccessGroup
from keys.models import VirtualKey
from orgs import sso
from orgs.models import AuditEntry, Organization, Team, User

DASHBOARD_ROWS = 10
EXPIRY_WINDOW = datetime.timedelta(days=7)
BUDGET_ALERT = 0.8  # spend at or above this share of max_budget is shown as an alert
SHARE_CAP = 9999  # percent; a larger share (a tiny cap, or spend stored before amounts were bounded) shows as >9999


def budget_share(spend: float, limit: float | None) -> int | None:
    """Spend as a whole percentage of the cap, capped: never an overflow, whatever the stored numbers."""
    if not limit:
        return None
    ratio = 100 * spend / limit
    return round(ratio) if math.isfinite(ratio) and ratio <= SHARE_CAP else SHARE_CAP + 1


CHART_HEIGHT = 60
CHART_BAR_WIDTH = 4


class AccessAdminSite(AdminSite):
    site_header = "accessctl"
    site_title = "accessctl admin"
    index_title = "Access control"
    index_template = "admin/index.html"

    def has_permission(self, request: HttpRequest) -> bool:
        """Platform admins and viewers, org admins and team admins (by role or grant), while active.

        Computed from the user's roles on every request (`User.is_staff`), never from a stored flag.
        """
        user = request.user
        return bool(user.is_active and user.is_authenticated and user.policy_actor.uses_admin)

    login_template = "admin/login_sso.html"

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The password form (unless turned off) and, when configured, "Log in with single sign-on".

        Throttled by django-axes: a locked-out user_id and address get axes' 429. This is what
        `axes.middleware.AxesMiddleware` does, done here because the admin login is the only password
        login: the middleware would run on every request, the gateway's hot path included.
        """
        context = {"sso_enabled": sso.config() is not None, "password_login": sso.password_login_enabled(),
                   **(extra_context or {})}
        if request.method == "POST" and not context["password_login"]:
            context["sso_message"] = "Password login is turned off: log in with single sign-on."
            request.method = "GET"  # show the page; nothing is authenticated
        response = super().login(request, context)
        if getattr(request, "axes_locked_out", None):
            return get_lockout_response(request, response, getattr(request, "axes_credentials", None))
        return response

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"dashboard": Dashboard(self, request), **(extra_context or {})}
        return super().index(request, context)


class Dashboard:
    """What the index page shows, each part scoped by the model admin that lists those rows.

    Parts are evaluated lazily by the template, and only for models the user may view.
    """

    def __init__(self, site: AdminSite, request: HttpRequest) -> None:
        self.site = site
        self.request = request
        self.now = timezone.now()

    def _visible(self, model: Any) -> QuerySet | None:
        model_admin = self.site._registry.get(model)
        if model_admin is None or not model_admin.has_view_permission(self.request):
            return None
        return model_admin.get_queryset(self.request)

    def counts(self) -> list[dict[str, Any]]:
        rows = []
        for model in (Organization, Team, User, VirtualKey, AccessGroup):
            queryset = self._visible(model)
            if queryset is not None:
                rows.append({"label": model._meta.verbose_name_plural, "count": queryset.order_by().count(),
                             "url": f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"})
        return rows

    def expiring_keys(self) -> list[Any]:
        keys = self._visible(VirtualKey)
        if keys is None:
            return []
        soon = keys.filter(expires__gt=self.now, expires__lte=self.now + EXPIRY_WINDOW, blocked=False)
        return list(soon.order_by("expires")[:DASHBOARD_ROWS])

    def budget_alerts(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        over = Q(max_budget__gt=0, spend__gte=F("max_budget") * BUDGET_ALERT)
        for model, cap in ((VirtualKey, "max_budget"), (Team, "max_budget"), (User, "max_budget"),
                           (Organization, "budget__max_budget")):
            queryset = self._visible(model)
            if queryset is None:
                continue
            if cap != "max_budget":
                over_here = Q(**{f"{cap}__gt": 0, "spend__gte": F(cap) * BUDGET_ALERT})
            else:
                over_here = over
            for obj in queryset.filter(over_here).order_by("-spend")[:DASHBOARD_ROWS]:
                limit = obj.budget.max_budget if model is Organization else obj.max_budget
                rows.append({
                    "kind": model._meta.verbose_name,
                    "object": obj,
                    "spend": obj.spend,
                    "max_budget": limit,
                    "share": budget_share(obj.spend, limit),
                    "url": f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
                })
        return sorted(rows, key=lambda r: -(r["share"] or 0))[:DASHBOARD_ROWS]

    def check_chart(self) -> dict[str, Any] | None:
        """The last day of allowed and denied checks as bars (platform-wide counts: platform admins and
        viewers only). From the per-bucket counters in the cache (accessctl.metrics), no query."""
        if not self.request.user.policy_actor.reads_everything:
            return None
        series = metrics.chart_series()
        tallest = max((b["allowed"] + b["denied"] for b in series), default=0) or 1
        bars = []
        for index, bucket in enumerate(series):
            allowed = round(CHART_HEIGHT * bucket["allowed"] / tallest, 1)
            denied = round(CHART_HEIGHT * bucket["denied"] / tallest, 1)
            bars.append({
                "x": index * CHART_BAR_WIDTH,
                "allowed_y": CHART_HEIGHT - allowed, "allowed_h": allowed,
                "denied_y": CHART_HEIGHT - allowed - denied, "denied_h": denied,
                "title": f"{datetime.datetime.fromtimestamp(bucket['start'], datetime.UTC):%H:%M} UTC: "
                         f"{bucket['allowed']} allowed, {bucket['denied']} denied",
            })
        return {
            "bars": bars,
            "width": len(series) * CHART_BAR_WIDTH,
            "height": CHART_HEIGHT,
            "bar_width": CHART_BAR_WIDTH - 1,
            "allowed": sum(b["allowed"] for b in series),
            "denied": sum(b["denied"] for b in series),
            "tallest": tallest,
        }

    def latest_audit(self) -> list[Any]:
        entries = self._visible(AuditEntry)
        return [] if entries is None else list(entries[:DASHBOARD_ROWS])
