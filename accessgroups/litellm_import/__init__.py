"""`manage.py import_litellm`: a LiteLLM deployment's PostgreSQL database brought into accessctl.

`source` reads LiteLLM's tables; `mapping` (with `values`) turns each row into accessctl's values, or refuses
it saying why; `writer` compares them with accessctl's rows and writes each batch (audited, caches
invalidated) through `targets` (one per table) and `insert`; `run` orders it all; `report` says what happened.

It writes every app's rows (users, organizations, teams, keys, access groups), so it lives in the top app.
"""
from .report import TableReport
from .run import DEFAULT_BATCH_SIZE, ImportReport, run_import
from .source import SourceError, masked_url

__all__ = ["DEFAULT_BATCH_SIZE", "ImportReport", "SourceError", "TableReport", "masked_url", "run_import"]
