"""Workers and clients run under a role that cannot alter the schema; migrations need another."""

from __future__ import annotations

import asyncpg
import pytest

import durable
from durable import WorkflowContext, activity, workflow

GRANTS = """
CREATE ROLE durable_app LOGIN;
GRANT USAGE ON SCHEMA durable TO durable_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA durable TO durable_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA durable TO durable_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA durable TO durable_app;
"""


def _as_user(dsn: str, user: str) -> str:
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://{user}@{rest.split('@', 1)[1]}"


@activity
async def double(x: int) -> int:
    return 2 * x


@workflow
async def doubled(ctx: WorkflowContext, x: int) -> int:
    return await ctx.activity(double, x)


async def test_application_role_runs_workflows_but_cannot_alter_the_schema(dsn: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("DROP ROLE IF EXISTS durable_app")
        await admin.execute(GRANTS)
        app_dsn = _as_user(dsn, "durable_app")
        client = await durable.Client.connect(app_dsn)  # the schema is current: no DDL needed
        try:
            async with durable.Worker(client, workflows=[doubled], activities=[double]):
                assert await client.execute(doubled, 21) == 42
        finally:
            await client.close()
        app = await asyncpg.connect(app_dsn)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("CREATE TABLE durable.intruder (x int)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("ALTER TABLE durable.history ADD COLUMN x int")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("DROP TABLE durable.history")
        finally:
            await app.close()
    finally:
        await admin.execute("DROP OWNED BY durable_app; DROP ROLE IF EXISTS durable_app")
        await admin.close()
