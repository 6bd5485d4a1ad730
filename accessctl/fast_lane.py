"""The gateway's per-call routes without Django's middleware chain and URL resolver (production WSGI only).

A gateway calls the check before, and the usage report after, every LLM call. Those views need none of
what the middleware stack is for (sessions, CSRF, authentication by cookie, messages): they take the key
from the request and authenticate it themselves. Walking the stack and the URL patterns still cost every
call about as much as the warm check itself. This handler serves the routes named in
`ACCESSCTL_FAST_ROUTES` directly and keeps what the stack did for them:

- the Host check against ALLOWED_HOSTS (CommonMiddleware);
- SecurityMiddleware's redirect to HTTPS and its headers, and X-Frame-Options (the same middleware
  objects, called around the view);
- the database lane and its 503 for a database that cannot be reached (accessctl.lanes);
- Django's request signals (connections are checked and closed as usual), its exception handling and
  error logging.

Every other path goes through the whole stack. The test client never comes here (it has its own
handler): tests/gateway/test_fast_lane.py drives this handler with WSGI environments.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import resolve, reverse, set_urlconf
from django.utils.log import log_response

from accessctl.lanes import FREE_PATHS, database_lane, unreachable_database


def _never_called(request: HttpRequest) -> HttpResponse:  # the middleware objects' get_response: unused
    raise AssertionError("the fast lane calls the view itself")


class FastLaneHandler(WSGIHandler):
    """Django's WSGI handler, with the gateway's routes served around the middleware chain."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._security = SecurityMiddleware(_never_called)
        self._frame_options = XFrameOptionsMiddleware(_never_called)
        self._routes: dict[str, Callable[..., HttpResponse]] | None = None

    def routes(self) -> dict[str, Callable[..., HttpResponse]]:
        """path → view of the fast routes, resolved once (they take no arguments)."""
        if self._routes is None:
            routes = {}
            for name in settings.ACCESSCTL_FAST_ROUTES:
                path = reverse(name)
                routes[path] = resolve(path).func
            self._routes = routes
        return self._routes

    def get_response(self, request: HttpRequest) -> HttpResponse:
        view = self.routes().get(request.path_info)
        if view is None:
            return super().get_response(request)
        set_urlconf(settings.ROOT_URLCONF)
        try:
            request.get_host()  # raises DisallowedHost (a 400) as CommonMiddleware would
            response = self._security.process_request(request) or self._call(view, request)
        except Exception as exc:  # noqa: BLE001 - as the middleware chain converts it
            response = response_for_exception(request, exc)
        response = self._frame_options.process_response(request, self._security.process_response(request, response))
        response._resource_closers.append(request.close)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response

    def _call(self, view: Callable[..., HttpResponse], request: HttpRequest) -> HttpResponse:
        try:
            if request.path in FREE_PATHS:
                return view(request)
            with database_lane():
                return view(request)
        except Exception as exc:
            answer = unreachable_database(exc)  # a full lane or an unreachable database: 503, as the stack does
            if answer is None:
                raise
            return answer
