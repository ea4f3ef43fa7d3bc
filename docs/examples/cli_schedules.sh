# The command-line guide's schedules (docs/guide/cli.md), against $DURABLE_DATABASE_URL.
set -euo pipefail

: > worker.log
durable worker cli_app 2> worker.log &
until grep -q "serving task queue" worker.log; do kill -0 $!; sleep 0.1; done

# --8<-- [start:schedules]
# each weekday at 09:00 in Berlin (summer time or not), one run at a time, waiting ones queued
durable schedule create digest digest '"support"' --cron "0 9 * * 1-5" \
    --timezone Europe/Berlin --overlap buffer_all --note "weekday digest"
durable schedule create pulse digest '"ops"' --every 15m --offset 2m --jitter 30s --json
durable schedule list
durable schedule trigger digest                # a run now (the overlap policy decides)
durable schedule backfill digest --start 2026-11-30T00:00+01:00 --end 2026-12-05T00:00+01:00
durable schedule pause digest --note "holidays"
durable schedule update digest --cron "0 10 * * 1-5" --attr team='"support"'
durable schedule unpause digest
durable schedule describe digest               # settings, next fire times, recent slots
durable list --attr schedule_id='"digest"'     # the runs it started
durable schedule delete pulse                  # the runs it started are left alone
# --8<-- [end:schedules]

kill -TERM %1 && wait
