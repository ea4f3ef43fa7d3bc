"""The part of the Store every other part uses: the pool, transactions, retries."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from .._clock import Clock
from .._codecs import Codecs
from .._errors import PayloadError
from .._failures import Failure
from .batching import _Batcher
from .connection import CLOSE_TIMEOUT, _ConnectionSetup, _unpack
from .errors import _RETRYABLE, _request_race
from .listener import Listener
from .records import (
    _Rows,
    _Step,
)
from .runs import (
    _Post,
    _Start,
)


class StoreBase:
    """Connections, codecs, the listener and the batchers, shared by the Store's parts."""

    pool: asyncpg.Pool
    connection_setup: _ConnectionSetup
    commit_observer: Callable[[int], None]  # told the number of steps of each group commit
    dsn: str
    listen_dsn: str | None  # the notification connection's, when not dsn (behind a pooler)
    prepared_statements: bool  # False behind a pooler that cannot keep them
    codecs: Codecs
    clock: Clock
    listener: Listener
    _group_commit: _Batcher[_Step, _Rows]
    _group_start: _Batcher[_Start, bool]
    _group_post: _Batcher[_Post, bool]
    _post_keys: itertools.count[int]
    limited_queues: set[str]  # task queues found to have activity limits (claims take turns)

    async def close(self) -> None:
        await self.listener.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.pool.close()
        except TimeoutError:  # connections in use, or a server that does not see us off
            self.pool.terminate()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                yield conn
            except BaseException:
                # a connection that died took its transaction with it: then rolling back fails
                # with "the underlying connection is closed", which must not hide the error
                # that says why
                with contextlib.suppress(asyncpg.InterfaceError, asyncpg.InternalClientError):
                    await transaction.rollback()
                raise
            await transaction.commit()

    async def _retrying(
        self, work: Callable[[asyncpg.Connection], Any], *, transaction: bool = True
    ) -> Any:
        """Run ``work`` (in a transaction), again if Postgres aborted it for a deadlock."""
        for attempt in range(5):
            try:
                if not transaction:
                    async with self.pool.acquire() as conn:
                        return await work(conn)
                async with self._transaction() as conn:
                    return await work(conn)
            except (*_RETRYABLE, asyncpg.PostgresError) as exc:
                if attempt == 4 or not (isinstance(exc, _RETRYABLE) or _request_race(exc)):
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def open_payload(self, data: bytes | None) -> bytes:
        """A stored payload, its codecs undone; a missing one (a record that should hold a
        result and does not) is a PayloadError."""
        if data is None:
            raise PayloadError("the record holds no payload where one was expected")
        return self.codecs.open(data)

    def open_failure(self, data: bytes | None) -> Failure | None:
        failure: Failure | None = _unpack(self.codecs.open(data))
        return failure
