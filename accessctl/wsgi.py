"""WSGI entry point for production servers: Django's handler, with the gateway's per-call routes served
around the middleware chain (accessctl/fast_lane.py)."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accessctl.settings")
django.setup(set_prefix=False)

from accessctl.fast_lane import FastLaneHandler  # noqa: E402 - needs the apps loaded

application = FastLaneHandler()
