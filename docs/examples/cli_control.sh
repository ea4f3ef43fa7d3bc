# The command-line guide's controls (docs/guide/cli.md), against $DURABLE_DATABASE_URL.
set -euo pipefail

: > worker.log
durable worker cli_app 2> worker.log &
until grep -q "serving task queue" worker.log; do kill -0 $!; sleep 0.1; done

# --8<-- [start:control]
durable start ticket '"on hold"' --id T-5
durable pause T-5 --reason "waiting for the customer"
durable resume T-5
durable cancel T-5 --reason "duplicate"              # its code sees CancelledError
durable start ticket '"spam"' --id T-3 --json
durable terminate T-3 --reason "spam"                # at once: no more of its code runs
durable workflow reset T-3 --seq 1 --reason "not spam after all"   # closed runs too
durable workflow fork T-3 --seq 1 --new-id T-3-copy  # `durable workflow ...` groups these
durable batch terminate --name ticket --reason "end of demo"       # the open ones
CUTOFF=$(date -u +%FT%TZ)                            # now; the same for export and purge
durable export --closed-before "$CUTOFF" --status terminated -o terminated.jsonl
durable purge --closed-before "$CUTOFF" --status terminated
# --8<-- [end:control]

kill -TERM %1 && wait
