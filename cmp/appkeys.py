"""Every object shared through the aiohttp app, as a typed `web.AppKey`."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from cmp.audit.signing import Signer
from cmp.catalog import Catalog
from cmp.commit import GroupCommitter
from cmp.config import Settings
from cmp.ingest import Ingest
from cmp.ingest.impressions import Impressions
from cmp.metrics import Metrics
from cmp.ratelimit import RateLimiter
from cmp.state import StateReader
from cmp.store.longreads import LongReads
from cmp.treelog import TreeLog

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)  # where the pools connect (not in SETTINGS: a test makes its own)
POOL = web.AppKey("pool", asyncpg.Pool)
CATALOG = web.AppKey("catalog", Catalog)
COMMITTER = web.AppKey("committer", GroupCommitter)
IMPRESSIONS = web.AppKey("impressions", Impressions)
STATE = web.AppKey("state", StateReader)
INGEST = web.AppKey("ingest", Ingest)
METRICS = web.AppKey("metrics", Metrics)
LIMITER = web.AppKey("limiter", RateLimiter)
SIGNER = web.AppKey("signer", Signer)
LOOKUP_SLOTS = web.AppKey("lookup_slots", asyncio.Semaphore)
TREE = web.AppKey("tree", TreeLog)
LONG_READS = web.AppKey("long_reads", LongReads)

REQUEST_ID = web.RequestKey("request_id", str)
