"""Schedules: run a workflow on a timetable (docs/guide/schedules.md)."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import durable
from durable import WorkflowContext, workflow

QUEUE = "reports"


@workflow(task_queue=QUEUE)
async def report(ctx: WorkflowContext, region: str) -> str:
    await ctx.sleep(0.1)
    return f"report for {region} as of {ctx.now():%H:%M:%S}"


async def main() -> None:
    suffix = uuid.uuid4().hex[:6]  # this program's schedules
    async with await durable.Client.connect() as client:
        # --8<-- [start:create]
        nightly: durable.ScheduleHandle = await client.create_schedule(
            f"nightly-report-{suffix}",
            report,
            "eu",
            cron="0 3 * * *",  # 03:00 every day...
            timezone="Europe/Berlin",  # ...on Berlin's clocks, summer and winter
            overlap="skip",  # a slot that comes while the last run is open is dropped
        )
        described = await nightly.describe()
        print("next:", [f"{t:%Y-%m-%d %H:%M %Z}" for t in described.next_fire_times[:2]])
        # --8<-- [end:create]

        # --8<-- [start:every]
        sync = await client.create_schedule(
            f"sync-{suffix}",
            report,
            "us",
            every=timedelta(seconds=2),
            catchup_window=timedelta(minutes=1),
            jitter=timedelta(milliseconds=500),
        )
        try:
            await client.create_schedule(f"sync-{suffix}", report, "us", every=timedelta(hours=1))
        except durable.ScheduleError as exc:  # refused before anything is written
            print("refused:", exc)
        # --8<-- [end:every]

        async with durable.Worker(client, QUEUE, workflows=[report]):
            # --8<-- [start:act]
            await nightly.trigger()  # fire now, as the overlap policy allows
            start = datetime(2026, 11, 1, tzinfo=UTC)
            # three missed nights, one after another
            await nightly.backfill(start, start + timedelta(days=3), overlap="buffer_all")
            await asyncio.sleep(5)  # the worker fires `sync` every two seconds meanwhile
            await sync.pause(note="upstream maintenance")
            await sync.update(every=timedelta(hours=1), overlap="buffer_one")
            # --8<-- [end:act]

            # --8<-- [start:describe]
            for schedule in (nightly, sync):
                d: durable.ScheduleDescription = await schedule.describe()
                print(d.schedule_id.rsplit("-", 1)[0], d.args, "fired", d.fired, "paused", d.paused)
                run: durable.ScheduleRun
                for run in d.recent:  # the last ten slots handled, in that order
                    print("   ", run.workflow_id.split("@")[1], run.status)
            # --8<-- [end:describe]

        # --8<-- [start:delete]
        await nightly.delete()  # runs it started are left alone
        await sync.delete()
        # --8<-- [end:delete]


if __name__ == "__main__":
    asyncio.run(main())
