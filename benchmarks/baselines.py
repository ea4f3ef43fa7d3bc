"""The database baselines the targets are ratios to.

L: p50 latency (ms) of one autocommit single-row INSERT from one connection.
T: commits/s of single-row INSERTs from 32 concurrent connections.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from .stats import percentile

TABLE = "bench_baseline"
INSERT = f"INSERT INTO {TABLE} (value) VALUES ($1)"


async def _create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS {TABLE};"
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, value integer NOT NULL)"
        )
    finally:
        await conn.close()


async def insert_latency_ms(dsn: str, samples: int, warmup: int) -> float:
    """Baseline L."""
    await _create_table(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(warmup):
            await conn.execute(INSERT, i)
        latencies = []
        for i in range(samples):
            began = time.perf_counter()
            await conn.execute(INSERT, i)
            latencies.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return percentile(latencies, 50) * 1000


async def insert_throughput(dsn: str, connections: int, seconds: float) -> float:
    """Baseline T."""
    await _create_table(dsn)
    conns = await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(connections)))
    try:
        await asyncio.gather(*(conn.execute(INSERT, 0) for conn in conns))  # warm up
        deadline = time.perf_counter() + seconds

        async def insert_until_deadline(conn: asyncpg.Connection) -> int:
            count = 0
            while time.perf_counter() < deadline:
                await conn.execute(INSERT, count)
                count += 1
            return count

        began = time.perf_counter()
        counts = await asyncio.gather(*(insert_until_deadline(c) for c in conns))
        elapsed = time.perf_counter() - began
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))
    return sum(counts) / elapsed
