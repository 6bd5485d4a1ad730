"""`POST /api/v1/usage`: a gateway reports each call's spend (SPEC §6). Like the check, the view skips DRF's
per-request machinery and knows the caller from its key's cached snapshot; the reports go to
`keys.usage.usage_ingest` (a durable buffer, applied in batches)."""
from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer

from accessctl import metrics, policy
from accessctl.errors import ServiceError
from keys.authz import status_decision
from keys.usage import ReportOutcome, caller_label, usage_ingest, validate_idempotency_key

from .gateway import MASTER, _caller, _FastView, _json, _parsed_body, _Refusal
from .gateway_schema import _ERROR, _USAGE_OUTCOME, _USAGE_REPORT_FIELDS


def _outcome(outcome: ReportOutcome) -> dict[str, Any]:
    report = outcome.report
    return {
        "key": report.key,
        "model": report.model,
        "spend": report.spend,
        "prompt_tokens": report.prompt_tokens,
        "completion_tokens": report.completion_tokens,
        "total_tokens": report.prompt_tokens + report.completion_tokens,
        "idempotency_key": report.idempotency_key,
        "duplicate": outcome.duplicate,
        "budget_exceeded": list(outcome.budget_exceeded),
    }


def _reporter(request: Any) -> str:
    """Who reports usage (`caller_label`): the master key, or a usable key of a system user, from the
    key's cached snapshot (no query when warm). 401 for no, a bad or an unusable key; 403 for others."""
    snapshot = _caller(request)
    if snapshot is MASTER:
        return caller_label(None, is_master=True)
    status = status_decision(snapshot, timezone.now())
    if not status.allowed:
        raise _Refusal(f"Authentication Error, {status.message}",
                       "expired_key" if status.type == "expired_key" else "auth_error", 401)
    actor = policy.Actor(user_id=snapshot.user_id, platform_role=None, is_system=snapshot.user_is_system,
                         is_master=False)
    verdict = policy.can(actor, "usage:report")
    if not verdict:
        raise _Refusal(verdict.message, verdict.type, verdict.status)
    return caller_label(snapshot.user_id, is_master=False)


def usage(request: Any) -> HttpResponse:
    """Store one report (an object) or a list of them; 202 once they are committed."""
    try:
        caller = _reporter(request)
        data = _parsed_body(request, None)
        as_list = isinstance(data, list)
        if not as_list and not isinstance(data, dict):
            raise _Refusal("The request body must be a JSON object or a list of them.", "bad_request_error", 400,
                           "body")
        header_key = request.META.get("HTTP_IDEMPOTENCY_KEY")
        try:
            if header_key is not None:
                header_key = validate_idempotency_key(header_key, "Idempotency-Key")
            outcomes = usage_ingest(caller=caller, items=data if as_list else [data], as_list=as_list,
                                    header_key=header_key)
        except ServiceError as exc:
            raise _Refusal(exc.message, exc.type, exc.status, exc.param) from None
        except DatabaseError:
            raise _Refusal("The database is unavailable.", "no_db_connection", 503) from None
    except _Refusal as refusal:
        metrics.usage_reported(refusal.body["error"]["type"])
        return _json(refusal.body, refusal.status)
    for outcome in outcomes:
        metrics.usage_reported(
            "duplicate" if outcome.duplicate else "budget_exceeded" if outcome.budget_exceeded else "recorded"
        )
    if not as_list:
        return _json(_outcome(outcomes[0]), 202)
    duplicates = sum(1 for outcome in outcomes if outcome.duplicate)
    return _json(
        {
            "reports": len(outcomes),
            "accepted": len(outcomes) - duplicates,
            "duplicates": duplicates,
            "results": [_outcome(outcome) for outcome in outcomes],
        },
        202,
    )


class UsageView(_FastView):
    """`/api/v1/usage`: a gateway reports requests' spend (system users and the master key only).

    One report (a JSON object) or a list of up to 1,000. They are stored before the answer (202) and
    applied in batches (keys/usage.py). Like the check, it skips DRF's per-request machinery and knows the
    caller from its key's cached snapshot.
    """

    @extend_schema(
        operation_id="usage_report",
        summary="Report spend for a key and model (one report, or a list)",
        description="Stored before the answer and applied in batches; budgets count the spend not yet applied. "
        "A single report may carry an `Idempotency-Key` header, every report an `idempotency_key`: a "
        "retry with the same key (per caller) is answered `duplicate: true` and counted once.",
        request=inline_serializer("UsageReport", _USAGE_REPORT_FIELDS),
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        responses={
            202: OpenApiResponse(
                _USAGE_OUTCOME,
                description="Stored (or recognised as a retry). A list answers "
                "`{\"reports\", \"accepted\", \"duplicates\", \"results\": [...]}`.",
            ),
            400: OpenApiResponse(_ERROR, description="Bad input; `param` names the field (`[i].field` in a list)."),
            401: OpenApiResponse(_ERROR),
            403: OpenApiResponse(_ERROR, description="The caller is not a system user or the master key."),
            404: OpenApiResponse(_ERROR, description="Unknown key (`key`, or `[i].key` in a list)."),
            503: OpenApiResponse(_ERROR, description="The database is unavailable: nothing was stored."),
        },
        tags=["gateway"],
    )
    def post(self, request, *args, **kwargs):
        return usage(request)
