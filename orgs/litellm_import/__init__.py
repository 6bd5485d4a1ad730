"""`manage.py import_litellm`: a LiteLLM deployment's PostgreSQL database brought into accessctl.

`source` reads LiteLLM's tables, `mapping` turns each row into accessctl's values (or refuses it, saying
why), `writer` compares and writes them batch by batch (audited, caches invalidated), `run` orders it all.
"""
from .run import DEFAULT_BATCH_SIZE, ImportReport, run_import
from .source import SourceError, masked_url
from .writer import TableReport

__all__ = ["DEFAULT_BATCH_SIZE", "ImportReport", "SourceError", "TableReport", "masked_url", "run_import"]
