"""The event pipeline (see `cmp.ingest.pipeline`): the HTTP layer's one way into the log."""

from cmp.ingest.facts import Facts, request_facts
from cmp.ingest.parse import Rejected
from cmp.ingest.pipeline import Accepted, Ingest

__all__ = ["Accepted", "Facts", "Ingest", "Rejected", "request_facts"]
