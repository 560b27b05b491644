"""Open-loop load at a fixed rate, for latency at a given throughput (wrk2's job).

wrk2 is not packaged in Debian, and wrk's Lua `delay()` only spaces the requests of a
connection after its previous answer (closed loop), which hides queueing. This
generator schedules request *i* at `start + i/rate` whatever the server does, sends it
on the next idle keep-alive connection, and measures latency from the scheduled time,
so a stalled server shows up in the percentiles (no coordinated omission).

It runs as its own process, so its CPU stays out of the harness and the server:

    python -m loadtest.openloop --port 8080 --scenario single --rate 4000 --duration 5 \
        --site bench --origin https://bench.example

and prints one JSON line: sent, received, statuses, achieved rate, latency percentiles
(ms), the largest scheduling lag of the generator itself, unanswered requests.
Requests are released in 1 ms ticks, so latencies include up to ~1 ms of the
generator's own granularity: the figures err on the pessimistic side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable
from typing import cast

DRAIN_SECONDS = 30.0
TICK_SECONDS = 0.001


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._one_response():
            pass

    def _one_response(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else None])
        total = end + 4 + length
        if len(self.buffer) < total:
            return False
        status = int(head[9:12])
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(status)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def exchange(self, request: bytes) -> int:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def request_maker(args: argparse.Namespace) -> Callable[[], bytes]:
    host = f"Host: {args.host}:{args.port}\r\n"
    counter = 0
    if args.scenario == "single":
        path = f"/v1/sites/{args.site}/events"
        head = (
            f"POST {path} HTTP/1.1\r\n{host}Origin: {args.origin}\r\n"
            "Content-Type: application/json\r\n"
        )

        def single() -> bytes:
            nonlocal counter
            counter += 1
            # The first 8 hex digits are the run's nonce: the harness counts per run.
            event_id = f"{args.nonce:08x}{str(uuid.uuid4())[8:]}"
            body = (
                f'{{"event_id":"{event_id}","subject_id":"o-{args.nonce:x}-{counter}",'
                '"policy_version":1,"action":"accept_all"}'
            ).encode()
            return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body

        return single
    if args.scenario == "state":
        auth = f"Authorization: Bearer {args.key}\r\n"

        def state() -> bytes:
            subject = random.randrange(args.subjects)
            return (
                f"GET /v1/sites/{args.site}/subjects/s-{subject}/consent HTTP/1.1\r\n"
                f"{host}{auth}\r\n"
            ).encode()

        return state
    raise SystemExit(f"unknown scenario {args.scenario}")


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    make = request_maker(args)
    connections: list[HttpConnection] = []
    for _ in range(args.connections):
        _, protocol = await loop.create_connection(HttpConnection, args.host, args.port)
        connections.append(protocol)
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0

    async def worker(conn: HttpConnection) -> None:
        nonlocal errors
        while True:
            due = await queue.get()
            if due is None:
                return
            try:
                status = await conn.exchange(make())
            except ConnectionError:
                errors += 1
                return
            latencies.append(time.perf_counter() - due)
            key = str(status)
            statuses[key] = statuses.get(key, 0) + 1

    workers = [asyncio.create_task(worker(c)) for c in connections]
    total = int(args.rate * args.duration)
    start = time.perf_counter() + 0.05
    sent = 0
    max_lag = 0.0
    while sent < total:
        now = time.perf_counter()
        due_count = min(total, int((now - start) * args.rate) + 1) if now >= start else 0
        if due_count > sent:
            max_lag = max(max_lag, now - (start + sent / args.rate))
        while sent < due_count:
            queue.put_nowait(start + sent / args.rate)
            sent += 1
        await asyncio.sleep(TICK_SECONDS)
    scheduled_end = time.perf_counter()
    for _ in workers:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=DRAIN_SECONDS)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for conn in connections:
        if conn.transport is not None:
            conn.transport.close()
    latencies.sort()
    received = len(latencies)
    elapsed = max(scheduled_end - start, 1e-9)
    return {
        "scenario": args.scenario,
        "target_rate": args.rate,
        "duration_s": args.duration,
        "connections": args.connections,
        "sent": sent,
        "received": received,
        "unanswered": sent - received - errors,
        "connection_errors": errors,
        "statuses": statuses,
        "achieved_rate": received / elapsed,
        "max_schedule_lag_ms": round(max_lag * 1000, 3),
        "latency_ms": {
            str(p): round(percentile(latencies, p) * 1000, 3) for p in (50, 90, 99, 99.9, 100)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["single", "state"], required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--site", default="bench")
    parser.add_argument("--origin", default="https://bench.example")
    parser.add_argument("--key", default="", help="read key (state)")
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--nonce", type=int, default=int(time.time()))
    args = parser.parse_args()
    import uvloop

    print(json.dumps(uvloop.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
