"""Fixtures of the metrics tests: the gateway's check and usage reports (tests/gateway)."""
from tests.gateway.conftest import check, committed, report_usage  # noqa: F401
